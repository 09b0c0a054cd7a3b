/* shard_service — see shard_service.h. */
#include "shard_service.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "g4_alloc.h"
#include "g4_log.h"

struct shard_hops {
    pthread_mutex_t mu;
    shard_hop_t hop[SHARD_CHAINS];
    uint64_t seq;
};

int shard_init(shard_t *s, void *zctx, const shard_params_t *p, g4_err_t *err)
{
    memset(s, 0, sizeof *s);
    s->zctx = zctx;
    s->name = p->name;
    s->route_wait_ms = 1000;
    s->hops = g4_calloc(1, sizeof *s->hops);
    if (!s->hops) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->hops->mu, NULL);
    s->model = g4_model_load(p->model_path, p->begin, p->end, err);
    if (!s->model) return err->code;
    s->hp = g4_model_hparams(s->model);
    g4_model_range(s->model, &s->begin, &s->end);
    s->first = s->begin == 0;
    s->last = s->end == (int)s->hp->n_layer;
    s->n_slots = p->n_slots > 0 ? p->n_slots : 16;
    s->n_ubatch = p->n_ubatch > 0 ? p->n_ubatch : 512;
    s->min_forward_ms = p->min_forward_ms;
    g4_ctx_params_t cp = {.n_ctx = p->n_ctx, .n_ubatch = s->n_ubatch, .n_seq_max = s->n_slots, .kv_type = p->kv_type,
                          .gpu = p->gpu};
    s->ctx = g4_ctx_new(s->model, &cp, err);
    if (!s->ctx) return err->code;
    s->slot_seq = g4_malloc((size_t)s->n_slots * sizeof *s->slot_seq);
    s->slot_smp = g4_calloc((size_t)s->n_slots, sizeof *s->slot_smp);
    s->slot_logprobs = g4_calloc((size_t)s->n_slots, sizeof *s->slot_logprobs);
    s->slot_sampled = g4_calloc((size_t)s->n_slots, 1);
    s->slot_past_sample = g4_calloc((size_t)s->n_slots, 1);
    s->seq_buf = g4_malloc((size_t)s->n_ubatch * sizeof *s->seq_buf);
    s->want_buf = g4_malloc((size_t)s->n_ubatch);
    const size_t H = s->hp->n_embd, PW = (size_t)s->hp->n_layer * s->hp->ple_dim;
    s->hidden = g4_malloc((size_t)s->n_ubatch * H * sizeof(float));
    s->ple = PW ? g4_malloc((size_t)s->n_ubatch * PW * sizeof(float)) : NULL;
    s->logits = s->last ? g4_malloc((size_t)s->n_ubatch * s->hp->n_vocab * sizeof(float)) : NULL;
    if (!s->slot_seq || !s->slot_smp || !s->slot_logprobs || !s->slot_sampled || !s->slot_past_sample || !s->seq_buf || !s->want_buf || !s->hidden || (PW && !s->ple) || (s->last && !s->logits))
        return g4_err_set(err, G4_ERR_NOMEM, "shard: out of memory for %d rows", s->n_ubatch);
    for (int i = 0; i < s->n_slots; i++) s->slot_seq[i] = -1;
    g4_ctx_chunk_cost(s->ctx, &s->cache_cost);
    if (p->cache_mb) {
        s->store = shard_store_new(p->cache_mb < 0 ? shard_store_default_budget() : (uint64_t)p->cache_mb << 20);
        if (!s->store) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    }
    s->slot_mark = g4_calloc((size_t)s->n_slots, sizeof *s->slot_mark);
    s->slot_marked = g4_calloc((size_t)s->n_slots, 1);
    s->vlast = g4_malloc((size_t)s->n_slots * sizeof *s->vlast);
    s->vdone = g4_malloc((size_t)s->n_slots);
    s->vemit = g4_malloc((size_t)s->n_slots * sizeof *s->vemit);
    if (!s->slot_mark || !s->slot_marked || !s->vlast || !s->vdone || !s->vemit)
        return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    if (p->spec.path) {
        if (!s->last)
            return g4_err_set(err, G4_ERR_STATE, "a drafter runs on the stage with the last layer (%d), not on layers %d-%d",
                              (int)s->hp->n_layer, s->begin, s->end);
        if (!(s->spec = shard_spec_new(&p->spec, s->model, s->ctx, s->n_slots, p->kv_type, err))) return err->code;
        s->spec_hidden = !strcmp(shard_spec_kind(s->spec), "assistant");
        if (!(s->spec_p = g4_malloc((size_t)s->hp->n_vocab * sizeof *s->spec_p)))
            return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    }
    return G4_OK;
}

void shard_release(shard_t *s, const uint32_t *slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t sl = slots[i];
        if (sl >= (uint32_t)s->n_slots) continue;
        if (s->slot_seq[sl] >= 0) g4_seq_release(s->ctx, s->slot_seq[sl]);
        s->slot_seq[sl] = -1;
        s->slot_sampled[sl] = 0;
        g4_sampler_destroy(&s->slot_smp[sl]);
        if (s->slot_marked) s->slot_marked[sl] = 0;
        shard_spec_slot_reset(s->spec, (int)sl);
    }
}

void shard_free(shard_t *s)
{
    if (s->hops) pthread_mutex_destroy(&s->hops->mu);
    g4_free(s->hops);
    s->hops = NULL;
    for (int i = 0; i < s->n_peers; i++) zmq_close(s->peers[i].sock);
    if (s->slot_smp)
        for (int i = 0; i < s->n_slots; i++) g4_sampler_destroy(&s->slot_smp[i]);
    g4_free(s->slot_seq), g4_free(s->slot_smp), g4_free(s->slot_logprobs), g4_free(s->slot_sampled);
    g4_free(s->slot_past_sample);
    g4_free(s->bad), g4_free(s->failed_p);
    g4_free(s->seq_buf), g4_free(s->want_buf);
    g4_free(s->hidden), g4_free(s->ple), g4_free(s->logits);
    shard_store_free(&s->store);
    g4_free(s->lost);
    for (int i = 0; s->slot_mark && i < s->n_slots; i++) g4_draft_unmark(&s->slot_mark[i]);
    g4_free(s->slot_mark), g4_free(s->slot_marked), g4_free(s->vlast), g4_free(s->vdone), g4_free(s->vemit);
    shard_spec_free(&s->spec);
    g4_free(s->spec_p);
    g4_ctx_destroy(&s->ctx);
    g4_model_destroy(&s->model);
}

/* ---- where a shard may send: only what the scheduler registered ------------------- */

void shard_set_chain(shard_t *s, const G4__V1__Chain *ch)
{
    if (!s->hops || !ch->results) return;
    int me = -1;
    for (size_t i = 0; i < ch->n_names && i < ch->n_endpoints; i++)
        if (ch->names[i] && s->name && !strcmp(ch->names[i], s->name)) me = (int)i;
    if (me < 0) return; /* not a stage of it (a standby): batches of the chains it was in still go */
    pthread_mutex_lock(&s->hops->mu);
    shard_hop_t *h = &s->hops->hop[s->hops->seq % SHARD_CHAINS];
    h->seq = ++s->hops->seq;
    const char *next = (size_t)me + 1 < ch->n_endpoints ? ch->endpoints[me + 1] : "";
    snprintf(h->next, sizeof h->next, "%s", next ? next : "");
    snprintf(h->results, sizeof h->results, "%s", ch->results);
    pthread_mutex_unlock(&s->hops->mu);
}

/* 1 when one of the chains says: next (NULL: any) after this stage, results at sink. */
static int s_hop_known(shard_t *s, const char *next, const char *sink)
{
    int ok = 0;
    pthread_mutex_lock(&s->hops->mu);
    for (int i = 0; i < SHARD_CHAINS && !ok; i++) {
        const shard_hop_t *h = &s->hops->hop[i];
        ok = h->seq && !strcmp(h->results, sink) && (!next || !strcmp(h->next, next));
    }
    pthread_mutex_unlock(&s->hops->mu);
    return ok;
}

/* The batch's route names the next stage and the results endpoint the
 * scheduler registered (a Chain may trail its first batch: wait up to 1 s). */
static int s_route_ok(shard_t *s, const G4__V1__ForwardBatch *fb)
{
    if (!s->check_route || !s->hops) return 1;
    const char *sink = fb->route[fb->n_route - 1];
    const char *next = s->last ? "" : fb->route[0];
    if (!s->last && fb->n_route < 2) return 0;
    if (s->last && fb->n_route != 1) return 0;
    for (int k = 0; k <= s->route_wait_ms / 10; k++) {
        if (s_hop_known(s, next, sink)) return 1;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int64_t shard_max_frame(const shard_t *s)
{
    const int64_t U = s->n_ubatch, H = s->hp->n_embd, PW = (int64_t)s->hp->n_layer * s->hp->ple_dim;
    const int64_t hd = s->hp->hd_full > s->hp->hd_swa ? s->hp->hd_full : s->hp->hd_swa;
    int64_t kv = 0; /* every KV-source layer's rows, K and V (f32 at most), with section headers */
    for (uint32_t l = 0; l < s->hp->n_layer && l < G4_MAX_LAYERS; l++) kv += 2 * (int64_t)s->hp->n_head_kv[l] * hd * 4 * U + 64;
    const int64_t a = U * H * 4, b = U * PW * 4;
    int64_t m = a > b ? a : b;
    if (kv > m) m = kv;
    return m + (1 << 20); /* protobuf: route, ids, positions, flags of U rows */
}

static void *s_peer(shard_t *s, const char *ep, g4_err_t *err)
{
    for (int i = 0; i < s->n_peers; i++)
        if (!strcmp(s->peers[i].ep, ep)) return s->peers[i].sock;
    if (strlen(ep) >= sizeof s->peers[0].ep) {
        g4_err_set(err, G4_ERR_RANGE, "endpoint too long");
        return NULL;
    }
    if (s->n_peers == SHARD_MAX_PEERS) { /* forget the oldest (a swapped-out stage) */
        zmq_close(s->peers[0].sock);
        memmove(s->peers, s->peers + 1, sizeof s->peers[0] * (SHARD_MAX_PEERS - 1));
        s->n_peers--;
    }
    void *sock = g4_wire_socket(s->zctx, ZMQ_PUSH, err);
    if (!sock) return NULL;
    /* messages queue while the connection is being made (a fresh peer, or one
     * restarting): g4_wire_socket leaves ZMQ_IMMEDIATE off */
    if (g4_wire_connect(sock, ep, err)) {
        zmq_close(sock);
        return NULL;
    }
    shard_peer_t *p = &s->peers[s->n_peers++];
    snprintf(p->ep, sizeof p->ep, "%s", ep);
    p->sock = sock;
    return sock;
}

static void s_fail(shard_t *s, G4__V1__ForwardBatch *fb, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void s_fail(shard_t *s, G4__V1__ForwardBatch *fb, int code, const char *fmt, ...)
{
    char msg[G4_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->n_errors++;
    g4_log_warn("shard", "batch %llu: %s", (unsigned long long)fb->batch_id, msg);
    if (!fb->n_route) return;
    if (s->check_route && s->hops && !s_hop_known(s, NULL, fb->route[fb->n_route - 1])) return;
    g4_err_t err;
    void *sink = s_peer(s, fb->route[fb->n_route - 1], &err);
    if (!sink) return;
    char full[G4_ERR_MSG_MAX + 64];
    snprintf(full, sizeof full, "%s: %s", s->name, msg);
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__ForwardResult res = G4__V1__FORWARD_RESULT__INIT;
    G4__V1__Error e = G4__V1__ERROR__INIT;
    e.code = (G4__V1__ErrorCode)g4_wire_code(code);
    e.message = full;
    res.batch_id = fb->batch_id;
    res.error = &e;
    env.body_case = G4__V1__ENVELOPE__BODY_FORWARD_RESULT;
    env.forward_result = &res;
    g4_wire_send(sink, NULL, 0, &env, NULL, NULL, 0, 1, &err);
}

static uint64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void s_on_layer(void *user) { g4_daemon_work_step(user); }

/* Fault injection (tests): the forward pass lasts at least min_forward_ms. */
static void s_stretch(const shard_t *s, uint64_t t0_us)
{
    if (s->min_forward_ms <= 0) return;
    const uint64_t until = t0_us + (uint64_t)s->min_forward_ms * 1000u;
    for (uint64_t now = s_now_us(); now < until; now = s_now_us()) {
        const uint64_t d = until - now;
        struct timespec ts = {(time_t)(d / 1000000u), (long)(d % 1000000u) * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- a refused sequence fails alone ------------------------------------------------ */

static void s_bad(shard_t *s, uint32_t slot, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void s_bad(shard_t *s, uint32_t slot, int code, const char *fmt, ...)
{
    for (int k = 0; k < s->n_bad; k++)
        if (s->bad[k].slot == slot) return;
    shard_bad_t *b = &s->bad[s->n_bad++];
    b->slot = slot, b->code = code;
    va_list ap;
    va_start(ap, fmt);
    int k = snprintf(b->msg, sizeof b->msg, "%s: ", s->name ? s->name : "shard");
    vsnprintf(b->msg + k, sizeof b->msg - (size_t)k, fmt, ap);
    va_end(ap);
}

static int s_is_bad(const shard_t *s, uint32_t slot)
{
    for (int k = 0; k < s->n_bad; k++)
        if (s->bad[k].slot == slot) return 1;
    return 0;
}

/* room in s->bad for n more refusals; -1: no memory */
static int s_bad_reserve(shard_t *s, int n)
{
    if (s->bad && s->cap_bad >= s->n_bad + n) return 0;
    shard_bad_t *nb = g4_realloc(s->bad, (size_t)(s->n_bad + n) * sizeof *nb);
    if (!nb) return -1;
    s->bad = nb, s->cap_bad = s->n_bad + n;
    return 0;
}

/* ---- the prefix cache's orders (shard_prefix.h): drops and restores before
 * the rows, the sampler's look-back after the parameters, saves after ---- */

static void s_cache_restore(shard_t *s, G4__V1__ForwardBatch *fb)
{
    if (fb->n_cache_drop) shard_store_drop(s->store, fb->cache_drop, fb->n_cache_drop);
    if (!fb->n_cache_restore || s_bad_reserve(s, (int)fb->n_cache_restore)) return;
    for (size_t i = 0; i < fb->n_cache_restore; i++) {
        const G4__V1__CacheRestore *cr = fb->cache_restore[i];
        if (!cr || cr->slot >= (uint32_t)s->n_slots) continue;
        const uint32_t sl = cr->slot;
        shard_release(s, &sl, 1); /* the slot starts afresh */
        g4_err_t err;
        g4_err_set(&err, G4_ERR_STATE, "this stage keeps no prefix cache");
        g4_kv_chunk_t **ch = cr->n_chunks ? g4_malloc(cr->n_chunks * sizeof *ch) : NULL;
        int rc = G4_ERR_STATE, seq = -1;
        if (s->store && ch && shard_store_get(s->store, cr->chunks, cr->n_chunks, ch) == (int)cr->n_chunks) {
            seq = g4_seq_new(s->ctx, &err);
            rc = seq < 0 ? seq : g4_ctx_chunk_restore(s->ctx, seq, ch, (int)cr->n_chunks, (int)cr->n_keep, (int)cr->vstart, &err);
        } else if (s->store) {
            g4_err_set(&err, G4_ERR_STATE, "a chunk of the prefix is not kept here");
        }
        g4_free(ch);
        if (rc) {
            if (seq >= 0) g4_seq_release(s->ctx, seq);
            s_bad(s, sl, G4_ERR_STATE, "prefix cache: %s", err.msg);
            continue;
        }
        s->slot_seq[sl] = seq;
    }
}

/* last stage: the prompt ids before a restored prefix, into the slot's sampler (its penalties look back on them) */
static void s_cache_history(shard_t *s, const G4__V1__ForwardBatch *fb)
{
    for (size_t i = 0; i < fb->n_cache_restore; i++) {
        const G4__V1__CacheRestore *cr = fb->cache_restore[i];
        if (!cr || cr->slot >= (uint32_t)s->n_slots || s->slot_seq[cr->slot] < 0) continue;
        g4_err_t err;
        if (!s->slot_smp[cr->slot]) {
            g4_sampler_params_t p;
            g4_sampler_params_default(&p);
            p.temp = 0;
            s->slot_smp[cr->slot] = g4_sampler_new(&p, (int)s->hp->n_vocab, &err);
        }
        for (size_t k = 0; s->slot_smp[cr->slot] && k < cr->n_history; k++)
            if (cr->history[k] >= 0 && cr->history[k] < (int32_t)s->hp->n_vocab)
                g4_sampler_accept(s->slot_smp[cr->slot], cr->history[k]);
        /* a draft model follows the slot when every id before the prefix came (the scheduler sends them all then) */
        for (size_t k = 0; s->spec && cr->n_history == cr->n_keep && k < cr->n_history; k++) {
            const int32_t pos = (int32_t)k;
            shard_spec_slot_ids(s->spec, (int)cr->slot, &cr->history[k], &pos, NULL, 1);
        }
    }
}

/* the chunks to keep; what came in lost and what this stage cannot keep go on in s->lost */
static void s_cache_save(shard_t *s, const G4__V1__ForwardBatch *fb)
{
    s->n_lost = 0;
    const size_t want = fb->n_cache_lost + fb->n_cache_save;
    if (!want) return;
    if (s->cap_lost < want) {
        uint64_t *nl = g4_realloc(s->lost, want * sizeof *nl);
        if (!nl) return;
        s->lost = nl, s->cap_lost = want;
    }
    for (size_t i = 0; i < fb->n_cache_lost; i++) s->lost[s->n_lost++] = fb->cache_lost[i];
    for (size_t i = 0; i < fb->n_cache_save; i++) {
        const G4__V1__CacheSave *cs = fb->cache_save[i];
        if (!cs) continue;
        g4_err_t err;
        const int ok = cs->slot < (uint32_t)s->n_slots && s->slot_seq[cs->slot] >= 0 && !s_is_bad(s, cs->slot) &&
                       shard_store_save(s->store, s->ctx, s->slot_seq[cs->slot], cs->id, (int)cs->begin, (int)cs->end,
                                        &err) == G4_OK;
        if (!ok) s->lost[s->n_lost++] = cs->id;
    }
    atomic_store(&s->cache_bytes_pub, shard_store_bytes(s->store));
    atomic_store(&s->cache_chunks_pub, (uint64_t)shard_store_count(s->store));
}

/* The sequences of the batch this stage refuses (into s->bad); -1: no memory. */
static int s_check_rows(shard_t *s, const G4__V1__ForwardBatch *fb, const int8_t *flags, int has_embd)
{
    const int n = (int)fb->n_pos;
    if (s_bad_reserve(s, n)) return -1;
    for (int i = 0; i < n; i++) {
        const uint32_t sl = fb->slot[i];
        if (sl >= (uint32_t)s->n_slots) {
            s_bad(s, sl, G4_ERR_RANGE, "slot %u out of range (%d slots)", sl, s->n_slots);
            continue;
        }
        if (s->first && !(has_embd && (flags[i] & G4_ROW_EMBD)) && (fb->tokens[i] < 0 || fb->tokens[i] >= (int32_t)s->hp->n_vocab))
            s_bad(s, sl, G4_ERR_RANGE, "token id %d outside the vocabulary (%u)", fb->tokens[i], s->hp->n_vocab);
        if (fb->pos[i] < 0) s_bad(s, sl, G4_ERR_RANGE, "negative position");
        int first_row = 1;
        for (int j = 0; j < i && first_row; j++) first_row = fb->slot[j] != sl;
        if (!first_row || fb->pos[i] <= 0) continue;
        if (s->slot_seq[sl] < 0)
            s_bad(s, sl, G4_ERR_STATE, "slot %u is unknown here (was this shard restarted?)", sl);
        else if (fb->pos[i] > g4_seq_n_past(s->ctx, s->slot_seq[sl]))
            s_bad(s, sl, G4_ERR_STATE, "slot %u: position %d does not continue %d", sl, fb->pos[i],
                  g4_seq_n_past(s->ctx, s->slot_seq[sl]));
    }
    if (s->n_bad) s->n_errors++;
    for (int k = 0; k < s->n_bad; k++)
        g4_log_warn("shard", "batch %llu: sequence in slot %u refused: %s", (unsigned long long)fb->batch_id,
                    s->bad[k].slot, s->bad[k].msg);
    return s->n_bad;
}

/* Takes the rows of refused sequences out of the batch (ids, positions,
 * slots, flags, soft-token rows, hidden states, per-layer inputs; sample
 * rows renumbered); returns the rows left. */
static int s_drop_rows(shard_t *s, G4__V1__ForwardBatch *fb, int8_t *flags, float *embd, float *hidden, size_t PW)
{
    const int n = (int)fb->n_pos;
    const size_t H = s->hp->n_embd;
    int k = 0, e_in = 0, e_out = 0;
    size_t ns = 0, si = 0;
    for (int i = 0; i < n; i++) {
        const int soft = flags && (flags[i] & G4_ROW_EMBD);
        const int keep = !s_is_bad(s, fb->slot[i]);
        const int sampled = si < fb->n_sample_rows && fb->sample_rows[si] == (uint32_t)i;
        si += sampled;
        if (keep) {
            if (sampled) fb->sample_rows[ns++] = (uint32_t)k;
            fb->tokens[k] = fb->tokens[i], fb->pos[k] = fb->pos[i], fb->slot[k] = fb->slot[i];
            if (flags) flags[k] = flags[i];
            if (embd && soft) memmove(embd + (size_t)e_out++ * H, embd + (size_t)e_in * H, H * sizeof(float));
            if (hidden) memmove(hidden + (size_t)k * H, hidden + (size_t)i * H, H * sizeof(float));
            if (PW) memmove(s->ple + (size_t)k * PW, s->ple + (size_t)i * PW, PW * sizeof(float));
            k++;
        }
        e_in += soft;
    }
    fb->n_pos = fb->n_tokens = fb->n_slot = (size_t)k;
    fb->n_sample_rows = ns;
    if (flags) fb->row_flags.len = (size_t)k;
    return k;
}

/* fb->failed: what came in, plus this stage's refusals (restored by shard_handle). */
static void s_set_failed(shard_t *s, G4__V1__ForwardBatch *fb)
{
    if (!s->n_bad) return;
    const size_t n = fb->n_failed + (size_t)s->n_bad;
    if (s->cap_failed < n) { /* one block: [n] pointers, then [n] entries */
        void *nb = g4_realloc(s->failed_p, n * (sizeof(G4__V1__SlotError *) + sizeof(shard_failed_t)));
        if (!nb) return;
        s->failed_p = nb;
        s->failed_e = (shard_failed_t *)(s->failed_p + n);
        s->cap_failed = n;
    }
    for (size_t i = 0; i < fb->n_failed; i++) s->failed_p[i] = fb->failed[i];
    for (int k = 0; k < s->n_bad; k++) {
        shard_failed_t *f = &s->failed_e[k];
        g4__v1__slot_error__init(&f->e);
        g4__v1__error__init(&f->r);
        f->r.code = (G4__V1__ErrorCode)g4_wire_code(s->bad[k].code);
        f->r.message = s->bad[k].msg;
        f->e.slot = s->bad[k].slot;
        f->e.error = &f->r;
        s->failed_p[fb->n_failed + (size_t)k] = &f->e;
    }
    fb->failed = s->failed_p, fb->n_failed = n;
}

/* Every sequence of the batch was refused: the result says so at once. */
static void s_send_failed(shard_t *s, G4__V1__ForwardBatch *fb)
{
    s_set_failed(s, fb);
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__ForwardResult res = G4__V1__FORWARD_RESULT__INIT;
    res.batch_id = fb->batch_id;
    res.failed = fb->failed, res.n_failed = fb->n_failed;
    res.cache_lost = fb->cache_lost, res.n_cache_lost = fb->n_cache_lost;
    env.body_case = G4__V1__ENVELOPE__BODY_FORWARD_RESULT;
    env.forward_result = &res;
    g4_err_t err;
    void *sink = s_peer(s, fb->route[fb->n_route - 1], &err);
    if (!sink || g4_wire_send(sink, NULL, 0, &env, NULL, NULL, 0, 0, &err))
        g4_log_warn("shard", "result of batch %llu: %s", (unsigned long long)fb->batch_id, err.msg);
}

static void s_handle(shard_t *s, g4_msg_t *m);

void shard_handle(shard_t *s, g4_msg_t *m)
{
    G4__V1__ForwardBatch *fb = m->env->forward;
    G4__V1__SlotError **failed = fb->failed; /* (owned by the message: put back before it is freed) */
    const size_t n_failed = fb->n_failed;
    uint64_t *lost = fb->cache_lost;
    const size_t n_lost = fb->n_cache_lost;
    s->n_bad = 0, s->n_lost = 0;
    if (s->work) g4_daemon_work_begin(s->work, fb->batch_id, (uint32_t)fb->n_pos, (uint32_t)(s->end - s->begin));
    s_handle(s, m);
    if (s->work) g4_daemon_work_end(s->work);
    fb->failed = failed, fb->n_failed = n_failed;
    fb->cache_lost = lost, fb->n_cache_lost = n_lost;
}

static void s_handle(shard_t *s, g4_msg_t *m)
{
    G4__V1__ForwardBatch *fb = m->env->forward;
    const uint64_t t0 = s_now_us();
    int n = (int)fb->n_pos;
    const size_t H = s->hp->n_embd, PW = (size_t)s->hp->n_layer * s->hp->ple_dim;
    if (fb->n_route == 0) {
        s->n_errors++;
        g4_log_warn("shard", "batch %llu without a route: dropped", (unsigned long long)fb->batch_id);
        return;
    }
    if (!s_route_ok(s, fb)) { /* never to an endpoint only the batch names */
        s->n_errors++;
        g4_log_warn("shard", "batch %llu names a route the scheduler did not register (%s ...): dropped",
                    (unsigned long long)fb->batch_id, fb->route[0]);
        return;
    }
    if (fb->epoch && fb->epoch < s->epoch) { /* a lost scheduler's batch, still travelling */
        g4_log_info("shard", "batch %llu of an earlier scheduler dropped", (unsigned long long)fb->batch_id);
        return;
    }
    if (fb->epoch > s->epoch) { /* a new scheduler numbers the slots afresh */
        if (s->epoch) g4_log_info("shard", "a new scheduler (epoch %llu): every slot forgotten", (unsigned long long)fb->epoch);
        for (uint32_t sl = 0; sl < (uint32_t)s->n_slots; sl++) shard_release(s, &sl, 1);
        shard_store_clear(s->store); /* (its index of them starts empty) */
        s->epoch = fb->epoch;
    }
    /* releases travel with the data, so they are ordered with the rows */
    shard_release(s, fb->release, fb->n_release);
    s_cache_restore(s, fb);
    if (n <= 0 || n > s->n_ubatch || fb->n_slot != (size_t)n || fb->n_tokens != (size_t)n)
        return s_fail(s, fb, G4_ERR_PROTO, "batch of %d rows (limit %d) with %zu slots and %zu tokens", n, s->n_ubatch,
                      fb->n_slot, fb->n_tokens);
    const float *hidden_in = NULL;
    if (!s->first) {
        size_t len;
        hidden_in = g4_msg_raw(m, 0, &len);
        if (!hidden_in || len != (size_t)n * H * sizeof(float))
            return s_fail(s, fb, G4_ERR_PROTO, "hidden-state frame of %zu bytes, want %zu", hidden_in ? len : 0,
                          (size_t)n * H * sizeof(float));
        if (PW) {
            const void *pl = g4_msg_raw(m, 1, &len);
            if (!pl || len != (size_t)n * PW * sizeof(float))
                return s_fail(s, fb, G4_ERR_PROTO, "per-layer-input frame of %zu bytes, want %zu", pl ? len : 0,
                              (size_t)n * PW * sizeof(float));
            memcpy(s->ple, pl, len);
        }
    }
    /* soft tokens (images, audio): flags per row, their embeddings in frame 0 */
    const int8_t *flags = NULL;
    const float *embd = NULL;
    if (fb->row_flags.len) {
        if (fb->row_flags.len != (size_t)n)
            return s_fail(s, fb, G4_ERR_PROTO, "%zu row flags for %d rows", fb->row_flags.len, n);
        flags = (const int8_t *)fb->row_flags.data;
        int n_e = 0;
        for (int i = 0; i < n; i++) n_e += (flags[i] & G4_ROW_EMBD) != 0;
        if (s->first && n_e) {
            size_t len;
            const float *e = g4_msg_raw(m, 0, &len);
            if (!fb->embd || !e || len != (size_t)n_e * H * sizeof(float))
                return s_fail(s, fb, G4_ERR_PROTO, "soft-token frame of %zu bytes, want %zu", e ? len : 0,
                              (size_t)n_e * H * sizeof(float));
            embd = e; /* the model reads the soft-token rows in order, straight from the frame */
        }
    }
    /* bounded work: each row sampled at most once, in order; params and releases per slot */
    for (size_t i = 0; i < fb->n_sample_rows; i++)
        if (fb->sample_rows[i] >= (uint32_t)n || (i && fb->sample_rows[i] <= fb->sample_rows[i - 1]))
            return s_fail(s, fb, G4_ERR_RANGE, "sample rows must be increasing rows of the batch (%zu for %d rows)",
                          fb->n_sample_rows, n);
    if (fb->n_params > (size_t)s->n_slots || fb->n_release > (size_t)s->n_slots || fb->n_failed > (size_t)s->n_slots ||
        fb->n_cache_restore > (size_t)s->n_slots || fb->n_cache_save > (size_t)s->n_slots ||
        fb->n_remaining > (size_t)s->n_slots)
        return s_fail(s, fb, G4_ERR_RANGE, "%zu params, %zu releases, %zu failed for %d slots", fb->n_params,
                      fb->n_release, fb->n_failed, s->n_slots);
    /* per sequence: one that fails these checks is refused alone (its rows
     * taken out of the batch); its batch-mates run */
    int n_bad = s_check_rows(s, fb, flags, embd != NULL);
    if (n_bad < 0) return s_fail(s, fb, G4_ERR_NOMEM, "out of memory");
    if (n_bad) {
        if (fb->kv && !s->first) /* K/V sections cannot be cut by row: the whole batch fails, as before */
            return s_fail(s, fb, s->bad[0].code, "%s", s->bad[0].msg);
        n = s_drop_rows(s, fb, (int8_t *)flags, (float *)embd, (float *)hidden_in, PW);
        if (!n) return s_send_failed(s, fb);
    }
    /* sequences: a row at position 0 starts its slot afresh; otherwise the
     * slot must exist and continue where it is (or go back: truncate) */
    g4_err_t err;
    int32_t *seq = s->seq_buf; /* per-shard buffers: no allocation per batch */
    int8_t *want = s->last ? s->want_buf : NULL;
    if (want) memset(want, 0, (size_t)n);
    for (int i = 0; i < n; i++) {
        const uint32_t sl = fb->slot[i];
        int first_row = 1;
        for (int j = 0; j < i; j++)
            if (fb->slot[j] == sl) first_row = 0;
        if (first_row) {
            if (fb->pos[i] == 0) {
                if (s->slot_seq[sl] >= 0) g4_seq_release(s->ctx, s->slot_seq[sl]);
                s->slot_sampled[sl] = 0;
                s->slot_marked[sl] = 0;
                g4_sampler_destroy(&s->slot_smp[sl]);
                shard_spec_slot_reset(s->spec, (int)sl);
                s->slot_seq[sl] = g4_seq_new(s->ctx, &err);
                if (s->slot_seq[sl] < 0) {
                    s->slot_seq[sl] = -1;
                                        return s_fail(s, fb, err.code, "%s", err.msg);
                }
            } else if (s->slot_seq[sl] < 0) {
                                return s_fail(s, fb, G4_ERR_STATE, "slot %u is unknown here (was this shard restarted?)", sl);
            } else if (s->slot_marked[sl]) {
                /* after a verification pass: the rows up to this one were kept (the last stage kept them at once) */
                const g4_draft_mark_t *mk = &s->slot_mark[sl];
                s->slot_marked[sl] = 0;
                if (fb->pos[i] < mk->n_past ||
                    g4_draft_rewind(s->ctx, s->slot_seq[sl], mk, fb->pos[i] - mk->n_past, &err))
                    return s_fail(s, fb, G4_ERR_STATE, "slot %u: position %d after a verification pass from %d", sl,
                                  fb->pos[i], mk->n_past);
            } else if (fb->pos[i] != g4_seq_n_past(s->ctx, s->slot_seq[sl])) {
                if (fb->pos[i] > g4_seq_n_past(s->ctx, s->slot_seq[sl]) ||
                    g4_seq_truncate(s->ctx, s->slot_seq[sl], fb->pos[i], &err)) {
                    int have = g4_seq_n_past(s->ctx, s->slot_seq[sl]);
                                        return s_fail(s, fb, G4_ERR_STATE, "slot %u: position %d does not continue %d", sl, fb->pos[i], have);
                }
            }
        }
        seq[i] = s->slot_seq[sl];
        /* a verification pass: the slot as it stands before it, to go back to */
        if (flags && (flags[i] & G4_ROW_DRAFT) && !s->slot_marked[sl]) {
            if (g4_draft_mark(s->ctx, seq[i], &s->slot_mark[sl], &err)) return s_fail(s, fb, err.code, "%s", err.msg);
            s->slot_marked[sl] = 1;
        }
    }
    if (s->last) {
        for (size_t i = 0; i < fb->n_params; i++) {
            G4__V1__SeqParams *sp = fb->params[i];
            if (!sp || sp->slot >= (uint32_t)s->n_slots) continue;
            g4_sampler_params_t p;
            g4_sampler_params_default(&p);
            if (sp->sampling) {
                G4__V1__SamplingParams *q = sp->sampling;
                p.temp = q->temperature, p.top_k = q->top_k, p.top_p = q->top_p, p.min_p = q->min_p;
                p.repeat_penalty = q->repeat_penalty, p.repeat_last_n = q->repeat_last_n;
                p.presence_penalty = q->presence_penalty, p.frequency_penalty = q->frequency_penalty;
                p.seed = q->seed;
                s->slot_logprobs[sp->slot] = q->logprobs < 0 ? 0 : q->logprobs > 64 ? 64 : q->logprobs;
            }
            g4_sampler_destroy(&s->slot_smp[sp->slot]);
            s->slot_smp[sp->slot] = g4_sampler_new(&p, (int)s->hp->n_vocab, &err);
            if (s->spec &&
                shard_spec_slot_params(s->spec, (int)sp->slot, &p, sp->sampling ? sp->sampling->draft_max : 0, &err))
                g4_log_warn("shard", "slot %u drafts nothing: %s", sp->slot, err.msg);
        }
        s_cache_history(s, fb);
        for (int i = 0; s->spec && i < n; i++)
            shard_spec_slot_ids(s->spec, (int)fb->slot[i], &fb->tokens[i], &fb->pos[i], flags ? &flags[i] : NULL, 1);
        for (size_t i = 0; i < fb->n_sample_rows; i++) want[fb->sample_rows[i]] = 1;
        /* prompt rows go into the penalties' history, as the in-process run does;
         * rows after a sampled row are tokens sampled before (a sequence fed
         * again after a lost stage): the sampler accepts those when it draws */
        memset(s->slot_past_sample, 0, (size_t)s->n_slots);
        for (int i = 0; i < n; i++) {
            const uint32_t sl = fb->slot[i];
            if (s->slot_sampled[sl] || s->slot_past_sample[sl]) continue;
            if (want[i]) s->slot_past_sample[sl] = 1;
            if (!s->slot_smp[sl]) {
                g4_sampler_params_t p;
                g4_sampler_params_default(&p);
                p.temp = 0;
                s->slot_smp[sl] = g4_sampler_new(&p, (int)s->hp->n_vocab, &err);
            }
            if (s->slot_smp[sl] && !(flags && (flags[i] & G4_ROW_EMBD))) g4_sampler_accept(s->slot_smp[sl], fb->tokens[i]);
        }
    }
    g4_batch_t b = {n, s->first ? fb->tokens : NULL, embd, fb->pos, seq, want, flags};
    /* K/V rows of source layers that run on earlier stages (E models) */
    const void *kv_in = NULL;
    size_t kv_in_len = 0;
    if (fb->kv) kv_in = g4_msg_raw(m, (s->first ? 0 : 1 + (PW ? 1 : 0)), &kv_in_len);
    int needs_import = 0;
    for (int l = 0; l < s->begin; l++) needs_import |= g4_model_kv_imported(s->model, l);
    if (needs_import && g4_ctx_kv_import(s->ctx, &b, kv_in ? kv_in : "", kv_in ? kv_in_len : 0, &err)) {
        return s_fail(s, fb, err.code, "%s", err.msg);
    }
    /* (the last stage keeps its final hidden rows for an assistant) */
    int rc = g4_ctx_forward(s->ctx, &b, hidden_in, PW ? s->ple : NULL, !s->last || s->spec_hidden ? s->hidden : NULL,
                            s->last ? s->logits : NULL, &err);
    if (rc) return s_fail(s, fb, rc, "%s", err.msg);
    s_cache_save(s, fb);
    s_stretch(s, t0);
    s->n_batches++;
    const uint64_t dt = s_now_us() - t0;
    s->busy_us += dt;
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    h.request_id = m->env->header->request_id;
    env.header = &h;
    if (!s->last) {
        /* pass on: pop ourselves off the route, hidden states as raw frames */
        void *next = s_peer(s, fb->route[0], &err);
        if (!next) return s_fail(s, fb, err.code, "%s", err.msg);
        char **route = fb->route;
        G4__V1__TensorDesc *in_hidden = fb->hidden, *in_ple = fb->ple, *in_kv = fb->kv; /* owned by the message */
        G4__V1__TensorDesc *in_embd = fb->embd;
        fb->embd = NULL; /* the soft tokens stay here; later stages get hidden states */
        fb->route++, fb->n_route--;
        G4__V1__TensorDesc hd = G4__V1__TENSOR_DESC__INIT, pd = G4__V1__TENSOR_DESC__INIT;
        uint64_t hshape[2] = {(uint64_t)n, H}, pshape[2] = {(uint64_t)n, PW};
        hd.dtype = G4__V1__DTYPE__DTYPE_F32, hd.shape = hshape, hd.n_shape = 2;
        pd.dtype = G4__V1__DTYPE__DTYPE_F32, pd.shape = pshape, pd.n_shape = 2;
        fb->hidden = &hd;
        fb->ple = PW ? &pd : NULL;
        fb->stage = (uint32_t)s->begin;
        const void *raw[3] = {s->hidden, s->ple, NULL};
        size_t raw_len[3] = {(size_t)n * H * sizeof(float), (size_t)n * PW * sizeof(float), 0};
        int n_raw = PW ? 2 : 1;
        /* K/V sections: what came in, plus this stage's exports */
        const size_t kv_own = g4_ctx_kv_export_bytes(s->ctx, n);
        uint8_t *kv_out = NULL;
        G4__V1__TensorDesc kd = G4__V1__TENSOR_DESC__INIT;
        uint64_t kshape[1];
        if (kv_in_len + kv_own) {
            kv_out = g4_malloc(kv_in_len + kv_own);
            if (!kv_out) {
                fb->route = route, fb->n_route++;
                fb->hidden = in_hidden, fb->ple = in_ple, fb->kv = in_kv, fb->embd = in_embd;
                return s_fail(s, fb, G4_ERR_NOMEM, "out of memory");
            }
            if (kv_in_len) memcpy(kv_out, kv_in, kv_in_len);
            const size_t w = kv_own ? g4_ctx_kv_export(s->ctx, &b, kv_out + kv_in_len) : 0;
            kshape[0] = kv_in_len + w;
            kd.dtype = G4__V1__DTYPE__DTYPE_F16, kd.shape = kshape, kd.n_shape = 1;
            fb->kv = &kd;
            raw[n_raw] = kv_out, raw_len[n_raw] = kv_in_len + w, n_raw++;
        } else {
            fb->kv = NULL;
        }
        s_set_failed(s, fb); /* refused sequences travel on to the result */
        fb->cache_lost = s->lost, fb->n_cache_lost = s->n_lost; /* (put back by shard_handle) */
        env.body_case = G4__V1__ENVELOPE__BODY_FORWARD;
        env.forward = fb;
        rc = g4_wire_send(next, NULL, 0, &env, raw, raw_len, n_raw, 0, &err);
        g4_free(kv_out);
        fb->route = route, fb->n_route++;
        fb->hidden = in_hidden, fb->ple = in_ple, fb->kv = in_kv, fb->embd = in_embd;
        if (rc) return s_fail(s, fb, rc, "to %s: %s", fb->route[0], err.msg);
        return;
    }
    /* last stage: sample the requested rows, in row order */
    G4__V1__ForwardResult res = G4__V1__FORWARD_RESULT__INIT;
    G4__V1__SampledToken *toks = g4_calloc(fb->n_sample_rows + 1, sizeof *toks);
    G4__V1__SampledToken **tokp = g4_calloc(fb->n_sample_rows + 1, sizeof *tokp);
    G4__V1__TopLogprob *tops = g4_calloc(fb->n_sample_rows * 64 + 1, sizeof *tops);
    G4__V1__TopLogprob **topp = g4_calloc(fb->n_sample_rows * 64 + 1, sizeof *topp);
    g4_logprob_t lp[64];
    if (!toks || !tokp || !tops || !topp) {
        g4_free(toks), g4_free(tokp), g4_free(tops), g4_free(topp);
        return s_fail(s, fb, G4_ERR_NOMEM, "out of memory");
    }
    /* logits come in row order of the wanted rows */
    int8_t *is_want = g4_calloc((size_t)n, 1);
    int *lrow = g4_calloc((size_t)n, sizeof *lrow);
    if (!is_want || !lrow) {
        g4_free(is_want), g4_free(lrow), g4_free(toks), g4_free(tokp), g4_free(tops), g4_free(topp);
        return s_fail(s, fb, G4_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < fb->n_sample_rows; i++) is_want[fb->sample_rows[i]] = 1;
    for (int i = 0, k = 0; i < n; i++) lrow[i] = is_want[i] ? k++ : -1;
    /* speculative decoding: where each slot's sampling ends, its budget, the drafts' room */
    const int n_dmax = s->spec ? shard_spec_max(s->spec) : 0;
    int32_t *drafts = n_dmax ? g4_malloc((fb->n_sample_rows + 1) * (size_t)n_dmax * sizeof *drafts) : NULL;
    if (n_dmax && !drafts) {
        g4_free(is_want), g4_free(lrow), g4_free(toks), g4_free(tokp), g4_free(tops), g4_free(topp);
        return s_fail(s, fb, G4_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < s->n_slots; k++) s->vlast[k] = -1, s->vdone[k] = 0, s->vemit[k] = 0;
    for (size_t i = 0; i < fb->n_sample_rows; i++) s->vlast[fb->slot[fb->sample_rows[i]]] = (int32_t)fb->sample_rows[i];
    size_t ntop = 0, n_out = 0;
    for (size_t i = 0; i < fb->n_sample_rows; i++) {
        const uint32_t row = fb->sample_rows[i], sl = fb->slot[row];
        if (s->vdone[sl]) continue; /* rows after a draft the sampler did not confirm */
        float *lg = s->logits + (size_t)lrow[row] * s->hp->n_vocab;
        /* the next row a draft of this slot: this row verifies it */
        const int vnext = flags && (int)row + 1 < n && fb->slot[row + 1] == sl && (flags[row + 1] & G4_ROW_DRAFT);
        G4__V1__SampledToken *t = &toks[n_out];
        g4__v1__sampled_token__init(t);
        t->slot = sl;
        const int k = s->slot_logprobs[sl];
        if (k > 0) {
            g4_top_logprobs(lg, (int)s->hp->n_vocab, k, lp);
            t->top = topp + ntop;
            for (int j = 0; j < k; j++) {
                g4__v1__top_logprob__init(&tops[ntop]);
                tops[ntop].id = lp[j].id, tops[ntop].logprob = lp[j].logprob;
                topp[ntop] = &tops[ntop];
                ntop++;
            }
            t->n_top = (size_t)k;
        }
        if (!s->slot_smp[sl]) { /* no parameters sent: greedy */
            g4_sampler_params_t p;
            g4_sampler_params_default(&p);
            p.temp = 0;
            s->slot_smp[sl] = g4_sampler_new(&p, (int)s->hp->n_vocab, &err);
        }
        g4_sampler_t *smp = s->slot_smp[sl];
        const float *q = vnext && smp && g4_sampler_params(smp)->temp > 0
                             ? shard_spec_q(s->spec, (int)sl, fb->pos[row + 1], fb->tokens[row + 1])
                             : NULL;
        if (q) { /* the draft d drawn from q: kept with min(1, p/q), else a draw from norm(max(0, p - q)) */
            const int32_t d = fb->tokens[row + 1];
            g4_sampler_probs(smp, lg, s->spec_p);
            if (g4_sampler_uniform(smp) * q[d] < s->spec_p[d]) {
                t->id = d;
            } else {
                for (int v = 0; v < (int)s->hp->n_vocab; v++) s->spec_p[v] = s->spec_p[v] > q[v] ? s->spec_p[v] - q[v] : 0;
                t->id = g4_sampler_draw(smp, s->spec_p);
            }
        } else {
            t->id = smp ? g4_sampler_sample(smp, lg) : 0;
        }
        if (smp) g4_sampler_accept(smp, t->id);
        t->eog = g4_model_is_eog(s->model, t->id);
        s->slot_sampled[sl] = 1;
        s->vemit[sl]++;
        tokp[n_out++] = t;
        const int rejected = vnext && t->id != fb->tokens[row + 1];
        if (!rejected && (int32_t)row != s->vlast[sl]) continue;
        /* the slot's last id of the batch: a verification pass keeps its rows up to this one */
        s->vdone[sl] = 1;
        const int seq_id = s->slot_seq[sl];
        if (s->slot_marked[sl]) {
            const g4_draft_mark_t *mk = &s->slot_mark[sl];
            const int kept = fb->pos[row] + 1 - mk->n_past, n_drafts = g4_seq_n_past(s->ctx, seq_id) - mk->n_past - 1;
            s->slot_marked[sl] = 0;
            if (g4_draft_rewind(s->ctx, seq_id, mk, kept, &err)) {
                s_bad(s, sl, err.code, "%s", err.msg);
                continue;
            }
            atomic_fetch_add(&s->spec_passes, 1);
            atomic_fetch_add(&s->spec_drafted, (uint64_t)n_drafts);
            atomic_fetch_add(&s->spec_accepted, (uint64_t)(kept - 1));
        }
        if (!s->spec) continue;
        int cap = n_dmax;
        for (size_t r = 0; r < fb->n_remaining; r++)
            if (fb->remaining[r] && fb->remaining[r]->slot == sl) cap = fb->remaining[r]->n - s->vemit[sl] - 1;
        int32_t *out = drafts + (size_t)(n_out - 1) * n_dmax;
        const int nd = cap > 0 ? shard_spec_draft(s->spec, (int)sl, seq_id, t->id, g4_seq_n_past(s->ctx, seq_id),
                                                  s->hidden + (size_t)row * H, cap, out, &err)
                               : 0;
        if (nd < 0) g4_log_warn("shard", "slot %u: drafting failed: %s", sl, err.msg);
        else t->draft = out, t->n_draft = (size_t)nd;
    }
    g4_free(is_want), g4_free(lrow);
    res.batch_id = fb->batch_id;
    res.tokens = tokp, res.n_tokens = n_out;
    res.compute_us = s_now_us() - t0;
    s_set_failed(s, fb);
    res.failed = fb->failed, res.n_failed = fb->n_failed;
    res.cache_lost = s->lost, res.n_cache_lost = s->n_lost;
    env.body_case = G4__V1__ENVELOPE__BODY_FORWARD_RESULT;
    env.forward_result = &res;
    void *sink = s_peer(s, fb->route[fb->n_route - 1], &err);
    if (!sink || g4_wire_send(sink, NULL, 0, &env, NULL, NULL, 0, 0, &err))
        g4_log_warn("shard", "result of batch %llu: %s", (unsigned long long)fb->batch_id, err.msg);
    g4_free(toks), g4_free(tokp), g4_free(tops), g4_free(topp), g4_free(drafts);
}

/* ---- the worker thread ----------------------------------------------------------
 * It owns the data socket, the model context and the peers; the control
 * thread (main.c) keeps heartbeating and hands it slot releases. */

static void s_check_warm(shard_t *s)
{
    double ms = 0;
    if (atomic_load(&s->weights_ready) || !g4_model_warmed(s->model, 0, &ms)) return;
    atomic_store(&s->weights_ready_ms, (uint64_t)ms);
    atomic_store(&s->weights_ready, 1);
}

static void s_on_data(void *user, void *sock)
{
    shard_t *s = user;
    g4_msg_t m;
    g4_err_t err;
    const int rc = g4_wire_recv(sock, 0, &m, -1, &err);
    if (rc == G4_OK && m.env->body_case == G4__V1__ENVELOPE__BODY_FORWARD) shard_handle(s, &m);
    else if (rc != G4_ERR_TIMEOUT) {
        s->n_errors++;
        g4_log_warn("shard", "dropped a message: %s", rc ? err.msg : "not a ForwardBatch");
    }
    g4_msg_close(&m);
}

static void s_on_release(void *user, const void *data, size_t len)
{
    shard_release(user, data, len / sizeof(uint32_t));
}

static void s_on_tick(void *user)
{
    shard_t *s = user;
    s_check_warm(s);
    atomic_store(&s->batches_pub, s->n_batches);
    atomic_store(&s->errors_pub, s->n_errors);
}

int shard_worker_start(shard_t *s, void *data, g4_err_t *err)
{
    s->worker.on_ready = s_on_data, s->worker.on_note = s_on_release, s->worker.on_tick = s_on_tick;
    s->worker.user = s;
    if (s->work) g4_ctx_on_layer(s->ctx, s_on_layer, s->work); /* layers done, for the heartbeats */
    return g4_worker_start(&s->worker, s->zctx, data, err);
}

void shard_worker_release(shard_t *s, const uint32_t *slots, size_t n)
{
    g4_worker_note(&s->worker, slots, n * sizeof *slots);
}

void shard_worker_stop(shard_t *s) { g4_worker_stop(&s->worker); }
