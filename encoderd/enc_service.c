/* enc_service — see enc_service.h. */
#include "enc_service.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enc_encode.h"
#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_log.h"

const char *const enc_counter_names[ENC_C_COUNT] = {"requests",      "cache_hits",  "cache_misses", "errors",
                                                    "cache_entries", "cache_bytes", "tokens",       "encode_ms"};

typedef struct job {
    uint8_t route[256];
    size_t route_len;
    uint64_t request_id;
    int kind;
    enc_opts_t opts;
    uint8_t *data;
    size_t len;
    uint8_t key[32];
    /* result */
    int rc;
    g4_err_t err;
    float *emb;
    int n_tokens, n_embd;
    double ms;
} job_t;

typedef struct centry {
    uint8_t key[32];
    float *emb;
    int n_tokens, n_embd;
    uint64_t last_use;
} centry_t;

struct enc_service {
    enc_model_t *m;
    void *sock, *pair_main, *pair_worker;
    char ep[64];
    pthread_t worker;
    int worker_started;
    int jobs;
    centry_t *cache;
    int n_cache, cap_cache;
    uint64_t cache_cap_bytes, cache_bytes, tick;
    uint64_t c[ENC_C_COUNT];
    double ms_total;
};

static void *s_worker(void *arg)
{
    enc_service_t *s = arg;
    for (;;) {
        job_t *j = NULL;
        if (zmq_recv(s->pair_worker, &j, sizeof j, 0) != (int)sizeof j || !j) break;
        const double t0 = g4_clock_mono_s();
        j->rc = enc_encode(s->m, j->kind, j->data, j->len, &j->opts, &j->emb, &j->n_tokens, &j->n_embd, &j->err);
        j->ms = (g4_clock_mono_s() - t0) * 1e3;
        if (zmq_send(s->pair_worker, &j, sizeof j, 0) != (int)sizeof j) break;
    }
    return NULL;
}

enc_service_t *enc_service_new(enc_model_t *m, void *zctx, void *sock, uint64_t cache_bytes, g4_err_t *err)
{
    if (sodium_init() < 0) {
        g4_err_set(err, G4_ERR_STATE, "libsodium failed to initialise");
        return NULL;
    }
    enc_service_t *s = g4_calloc(1, sizeof *s);
    if (!s) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->m = m;
    s->sock = sock;
    s->cache_cap_bytes = cache_bytes;
    snprintf(s->ep, sizeof s->ep, "inproc://enc-worker-%p", (void *)s);
    s->pair_main = zmq_socket(zctx, ZMQ_PAIR);
    s->pair_worker = zmq_socket(zctx, ZMQ_PAIR);
    if (!s->pair_main || !s->pair_worker || zmq_bind(s->pair_main, s->ep) || zmq_connect(s->pair_worker, s->ep) ||
        pthread_create(&s->worker, NULL, s_worker, s)) {
        g4_err_set(err, G4_ERR_STATE, "cannot start the encoder worker: %s", zmq_strerror(zmq_errno()));
        enc_service_free(&s);
        return NULL;
    }
    s->worker_started = 1;
    return s;
}

void enc_service_free(enc_service_t **sp)
{
    if (!sp || !*sp) return;
    enc_service_t *s = *sp;
    if (s->worker_started) {
        job_t *stop = NULL;
        zmq_send(s->pair_main, &stop, sizeof stop, 0);
        /* results of jobs still running are dropped */
        pthread_join(s->worker, NULL);
    }
    if (s->pair_main) zmq_close(s->pair_main);
    if (s->pair_worker) zmq_close(s->pair_worker);
    for (int i = 0; i < s->n_cache; i++) free(s->cache[i].emb);
    g4_free(s->cache);
    g4_free(s);
    *sp = NULL;
}

void *enc_service_results(enc_service_t *s) { return s->pair_main; }

void enc_service_counters(const enc_service_t *s, uint64_t out[ENC_C_COUNT])
{
    memcpy(out, s->c, sizeof s->c);
    out[ENC_C_CACHE_ENTRIES] = (uint64_t)s->n_cache;
    out[ENC_C_CACHE_BYTES] = s->cache_bytes;
    out[ENC_C_ENCODE_MS] = (uint64_t)s->ms_total;
}

static void s_reply(enc_service_t *s, const uint8_t *route, size_t route_len, uint64_t rid, const float *emb,
                    int n_tokens, int n_embd, int cached, double ms)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    G4__V1__EncodeReply rep = G4__V1__ENCODE_REPLY__INIT;
    h.request_id = rid;
    env.header = &h;
    rep.n_tokens = n_tokens, rep.n_embd = n_embd, rep.cached = cached, rep.encode_ms = ms;
    env.body_case = G4__V1__ENVELOPE__BODY_ENCODE_REPLY;
    env.encode_reply = &rep;
    const void *raw[1] = {emb};
    size_t raw_len[1] = {(size_t)n_tokens * n_embd * sizeof(float)};
    g4_err_t err;
    if (g4_wire_send(s->sock, route, route_len, &env, raw, raw_len, 1, 1, &err))
        g4_log_warn("encoderd", "reply to request %llu: %s", (unsigned long long)rid, err.msg);
}

static void s_error(enc_service_t *s, const uint8_t *route, size_t route_len, uint64_t rid, int code, const char *msg)
{
    s->c[ENC_C_ERRORS]++;
    g4_wire_send_error(s->sock, route, route_len, rid, code, "%s", msg);
}

static centry_t *s_lookup(enc_service_t *s, const uint8_t key[32])
{
    for (int i = 0; i < s->n_cache; i++)
        if (!memcmp(s->cache[i].key, key, 32)) return &s->cache[i];
    return NULL;
}

static void s_insert(enc_service_t *s, const uint8_t key[32], float *emb, int n_tokens, int n_embd)
{
    const uint64_t bytes = (uint64_t)n_tokens * n_embd * sizeof(float);
    if (!s->cache_cap_bytes || bytes > s->cache_cap_bytes || s_lookup(s, key)) {
        free(emb);
        return;
    }
    while (s->n_cache && s->cache_bytes + bytes > s->cache_cap_bytes) { /* evict the least recently used */
        int lru = 0;
        for (int i = 1; i < s->n_cache; i++)
            if (s->cache[i].last_use < s->cache[lru].last_use) lru = i;
        s->cache_bytes -= (uint64_t)s->cache[lru].n_tokens * s->cache[lru].n_embd * sizeof(float);
        free(s->cache[lru].emb);
        s->cache[lru] = s->cache[--s->n_cache];
    }
    if (s->n_cache == s->cap_cache) {
        int cap = s->cap_cache ? s->cap_cache * 2 : 16;
        centry_t *n = g4_realloc(s->cache, (size_t)cap * sizeof *n);
        if (!n) {
            free(emb);
            return;
        }
        s->cache = n, s->cap_cache = cap;
    }
    centry_t *e = &s->cache[s->n_cache++];
    memcpy(e->key, key, 32);
    e->emb = emb, e->n_tokens = n_tokens, e->n_embd = n_embd, e->last_use = ++s->tick;
    s->cache_bytes += bytes;
}

void enc_service_handle(enc_service_t *s, g4_msg_t *m)
{
    const uint64_t rid = m->env->header ? m->env->header->request_id : 0;
    s->c[ENC_C_REQUESTS]++;
    if (m->env->body_case != G4__V1__ENVELOPE__BODY_ENCODE)
        return s_error(s, m->route, m->route_len, rid, G4_ERR_PROTO, "encoderd does not serve this message");
    G4__V1__EncodeRequest *r = m->env->encode;
    size_t len = 0;
    const uint8_t *data = g4_msg_raw(m, 0, &len);
    if (r->kind != G4__V1__MEDIA_KIND__MEDIA_IMAGE && r->kind != G4__V1__MEDIA_KIND__MEDIA_AUDIO)
        return s_error(s, m->route, m->route_len, rid, G4_ERR_RANGE, "unknown media kind");
    if (!data || !len) return s_error(s, m->route, m->route_len, rid, G4_ERR_FORMAT, "no media bytes");
    if (len > ENC_MAX_MEDIA_BYTES)
        return s_error(s, m->route, m->route_len, rid, G4_ERR_RANGE, "media larger than 64 MiB");
    if (r->image_min_tokens < 0 || r->image_max_tokens < 0 || r->image_min_tokens > 16384 || r->image_max_tokens > 16384)
        return s_error(s, m->route, m->route_len, rid, G4_ERR_RANGE, "image token limits out of range");
    /* the cache key: what decides the result (kind, options, bytes) */
    uint8_t key[32];
    const int32_t hdr[3] = {r->kind, r->kind == G4__V1__MEDIA_KIND__MEDIA_IMAGE ? r->image_min_tokens : 0,
                            r->kind == G4__V1__MEDIA_KIND__MEDIA_IMAGE ? r->image_max_tokens : 0};
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof key);
    crypto_generichash_update(&st, (const unsigned char *)hdr, sizeof hdr);
    crypto_generichash_update(&st, data, len);
    crypto_generichash_final(&st, key, sizeof key);
    centry_t *e = s_lookup(s, key);
    if (e) {
        s->c[ENC_C_CACHE_HITS]++;
        e->last_use = ++s->tick;
        s_reply(s, m->route, m->route_len, rid, e->emb, e->n_tokens, e->n_embd, 1, 0.0);
        return;
    }
    if (s->jobs >= ENC_MAX_JOBS)
        return s_error(s, m->route, m->route_len, rid, G4_ERR_AGAIN, "too many media being encoded");
    job_t *j = g4_calloc(1, sizeof *j);
    uint8_t *copy = g4_malloc(len);
    if (!j || !copy) {
        g4_free(j), g4_free(copy);
        return s_error(s, m->route, m->route_len, rid, G4_ERR_NOMEM, "out of memory");
    }
    memcpy(copy, data, len);
    memcpy(j->route, m->route, m->route_len);
    j->route_len = m->route_len;
    j->request_id = rid;
    j->kind = r->kind; /* G4__V1__MEDIA_KIND__MEDIA_* == G4_MEDIA_* */
    j->opts.image_min_tokens = r->image_min_tokens;
    j->opts.image_max_tokens = r->image_max_tokens;
    j->data = copy, j->len = len;
    memcpy(j->key, key, 32);
    s->c[ENC_C_CACHE_MISSES]++;
    if (zmq_send(s->pair_main, &j, sizeof j, 0) != (int)sizeof j) {
        g4_free(copy), g4_free(j);
        return s_error(s, m->route, m->route_len, rid, G4_ERR_STATE, "the encoder worker is gone");
    }
    s->jobs++;
}

void enc_service_on_results(enc_service_t *s)
{
    for (;;) {
        job_t *j = NULL;
        if (zmq_recv(s->pair_main, &j, sizeof j, ZMQ_DONTWAIT) != (int)sizeof j || !j) return;
        s->jobs--;
        if (j->rc) {
            s_error(s, j->route, j->route_len, j->request_id, j->rc, j->err.msg);
        } else {
            s->c[ENC_C_TOKENS] += (uint64_t)j->n_tokens;
            s->ms_total += j->ms;
            s_reply(s, j->route, j->route_len, j->request_id, j->emb, j->n_tokens, j->n_embd, 0, j->ms);
            s_insert(s, j->key, j->emb, j->n_tokens, j->n_embd);
            j->emb = NULL;
        }
        free(j->emb);
        g4_free(j->data);
        g4_free(j);
    }
}

/* ---- the daemon's loop ------------------------------------------------------------ */

static void s_handle_request(void *svc, void *sock, g4_msg_t *m)
{
    (void)sock;
    enc_service_handle(svc, m);
}

void enc_service_run(enc_service_t *s, g4_daemon_t *d)
{
    d->n_counters = ENC_C_COUNT;
    for (int i = 0; i < ENC_C_COUNT; i++) d->counter_names[i] = enc_counter_names[i];
    while (!g4_daemon_stop) {
        zmq_pollitem_t it[3] = {{s->sock, 0, ZMQ_POLLIN, 0}, {enc_service_results(s), 0, ZMQ_POLLIN, 0},
                                {d->ctl, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(it, d->ctl ? 3 : 2, G4_HEARTBEAT_MS / 2);
        if (n > 0 && (it[1].revents & ZMQ_POLLIN)) enc_service_on_results(s);
        if (n > 0 && (it[0].revents & ZMQ_POLLIN)) g4_daemon_serve_burst(s->sock, 64, s_handle_request, s, NULL);
        if (n > 0 && d->ctl && (it[2].revents & ZMQ_POLLIN)) g4_daemon_poll_ctl(d);
        enc_service_counters(s, d->counter_values);
        g4_daemon_tick(d);
    }
}
