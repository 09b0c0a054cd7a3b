/* sched_internal — the structs the pieces of schedulerd share, and the few
 * functions one piece offers another. Not an API: only schedulerd's .c files
 * include it; main.c and the tests go through sched.h (and the pure
 * sched_batch.h, sched_text.h).
 *
 *   sched.c        the loop: sched_new/free/poll/drain, message dispatch,
 *                  s_schedule (forms and sends ForwardBatches), s_on_result
 *   sched_peers.c  the daemons: registration, heartbeats, the pipeline chain,
 *                  a lost daemon's requests (parked / calls sent again), Status
 *   sched_req.c    a request's life: admission, the tokenizer calls, started,
 *                  exactly one done / error, cancellation, timers
 *   sched_text.c   the way out: detokenizing, stop strings, progress events
 *   sched_media.c  images and audio: encoderd calls, soft tokens spliced in
 *   sched_batch.c  the batch former: pure functions (no sockets, no protobuf)
 *
 * A request's states (req_t.state): R_CHAT (rendering the chat) → R_TOKENIZE
 * → [R_ENCODING] → R_QUEUED (waiting for a slot) → R_RUNNING (prefill, then
 * decode) → freed; R_FINISHING: ended while a batch of it is out (it keeps
 * its slot until the batch returns). */
#ifndef SCHED_INTERNAL_H
#define SCHED_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "g4_wire.h"
#include "schedulerd.h"
#include "sched_batch.h"
#include "sched_prefix.h"

#define MAX_DAEMONS 64
#define MAX_CHAIN 32
#define MAX_BATCHES 64
#define MAX_MEDIA 63
#define KEEPALIVE_MS 1000
#define PROGRESS_MS 500 /* a prefilling request hears how far it is this often */

enum { D_FREE, D_READY, D_DRAINING, D_GONE };
enum { R_FREE, R_CHAT, R_TOKENIZE, R_QUEUED, R_RUNNING, R_FINISHING, R_ENCODING };
/* the tokenizer / encoder call a request waits for (the low bits of its call id) */
enum { CALL_RENDER = 1, CALL_TOKENIZE = 2, CALL_DETOK = 3, CALL_ENCODE = 4 };

/* ---- a registered daemon --------------------------------------------------- */

typedef struct drec {
    int state;
    G4__V1__Role role;
    char name[96], endpoint[256], model[512], backend[32], host[64], digest[32];
    int pid, layer_begin, layer_end, n_layer, n_slots, n_vocab, n_ctx;
    spx_stage_t cache; /* shards: the prefix cache's budget and accounting */
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
    char user_id[48];  /* its authenticated identity ("daemon:KEY"; "" without CURVE) */
    int insecure;      /* it runs on a non-loopback tcp:// without CURVE */
    int replaced;      /* a new process took its name (g4 swap): kept until it stops, then forgotten */
    char draft[16];    /* shards: the drafter it runs after sampling ("" none, "assistant", "model") */
} drec_t;

/* ---- a request --------------------------------------------------------------- */

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
    int8_t *rflag;   /* [n_prompt] G4_ROW_* flags once the soft tokens are spliced in */
    float *embd;     /* rows with G4_ROW_EMBD, in prompt order, [n][n_embd] */
    int n_embd;
    /* the prefix cache (sched_cache.c): the prompt rows' keys; whether a
     * lookup is due (PX_LOOKUP), done (PX_ACTIVE) or off; the chunk its next
     * one goes under; a restore to send with its next batch */
    uint64_t *pkeys;
    int *px_starts, n_px_starts; /* the ubatches its prompt is fed in from position 0 */
    int px_phase, px_node, vrows, cached;
    uint64_t px_node_id;
    int *px_path, n_px_path; /* [n_px_path] node indices, from position 0 */
    /* speculative decoding: the ids the last stage drafted after tok[draft_pos - 1]
     * (verified in the next batch), and the counts for the usage */
    int32_t draft[64];
    int n_draft, draft_pos;
    int n_drafted, n_accepted, n_passes;
} req_t;
enum { PX_LOOKUP = 0, PX_ACTIVE = 1, PX_OFF = 2 };

/* ---- a micro-batch in flight, and the scheduler ------------------------------ */

typedef struct batch {
    uint64_t id;
    int n_req;
    int *reqs;      /* request indices */
    int *rows_fed;  /* rows each request contributed */
    int *first_pos; /* position of each request's first row */
    int *sample_pos; /* position of each request's first sampled row */
    uint64_t stages; /* daemons (bit per record) the batch goes through */
    int last_stage;  /* record of the chain's last shard: only it sends the result */
    uint64_t sent_ms, alive_ms; /* alive: a stage of its chain was last seen working on it (or an older batch) */
    double frac;     /* share of the layers it has been through (stages' heartbeats) */
    int *px_save;    /* per request: the prefix-cache node its chunk is kept as (-1: none) */
    uint64_t *px_save_id;
    uint8_t *px_restored; /* per request: the batch restored it from the prefix cache */
    int *n_draft;    /* per request: drafted ids it verifies (its rows: the last id, then those) */
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
    uint64_t n_done, n_failed, n_migrated, n_batch_timeouts, n_refused;
    int n_vocab; /* of the pipeline (0: unknown): prompt ids are checked against it at admission */
    char model[512];
    uint64_t chain_lost_ms;
    uint64_t epoch; /* this scheduler's start (realtime ms): its batches and slots */
    uint64_t started_ms; /* sched_now() at sched_new: its uptime in Status */
    /* the rows of the batch being formed (n_ubatch each; no allocation per step) */
    int32_t *bt_tok, *bt_pos;
    uint32_t *bt_slot, *bt_srows;
    int8_t *bt_flags;
    float *bt_embd;
    size_t bt_embd_cap;         /* floats */
    G4__V1__SeqParams *bt_sps;  /* params of slots starting in the batch */
    G4__V1__SeqParams **bt_spp;
    sched_seq_t *bt_seq;        /* [n_r] the requests as the batch former sees them */
    sched_admit_t *bt_admit;    /* [n_r] */
    sched_pick_t *bt_pick;      /* [n_r] */
    int bt_cap_r;
    /* the prefix cache's index (sched_cache.c), chunks to drop with the next batch, counters */
    spx_t px;
    int px_on;
    uint8_t px_hkey[16];        /* the key soft-token rows are hashed with */
    uint64_t *px_drop;
    int n_px_drop, cap_px_drop;
    uint64_t px_hits, px_misses, px_reused, px_computed;
};

static inline uint64_t sched_now(void) { return g4_wire_now_ms(); }

/* ---- sched.c ----------------------------------------------------------------- */

/* Forgets every batch in flight (their results will match none). */
void sched_forget_batches(sched_t *s);
/* A message from a peer that may not send it: counted, logged (rate-limited), answered where possible. */
void sched_refuse(sched_t *s, g4_msg_t *m, const char *what);

/* ---- sched_peers.c ------------------------------------------------------------- */

/* Record index of the daemon that holds name (not one a swap replaced), -1 when unknown. */
int sched_peers_find(sched_t *s, const char *name);
/* The newest ready tokenizer / encoder (a swapped-in one takes new work), -1 none. */
int sched_peers_tokenizer(sched_t *s);
int sched_peers_encoder(sched_t *s);
/* Register, Heartbeat and Status from the ROUTER (m borrowed). */
void sched_peers_register(sched_t *s, g4_msg_t *m);
/* RegisterReply{accepted: false, reason} to the sender of m. */
void sched_peers_refuse_register(sched_t *s, g4_msg_t *m, const char *reason);
void sched_peers_heartbeat(sched_t *s, g4_msg_t *m);
void sched_peers_status(sched_t *s, g4_msg_t *m);
/* Daemons silent past heartbeat_timeout_ms are gone; busy ones without progress are stuck. */
void sched_peers_timers(sched_t *s, uint64_t now);
/* "layers 3-6": what no ready shard covers (for the error of a request that waited). */
void sched_peers_missing_layers(sched_t *s, char *buf, size_t size);
/* Sends a call lost with its tokenizer / encoder again once there is one. */
void sched_peers_retry_calls(sched_t *s, req_t *q);
/* Every batch in flight is lost: running requests wait and are fed again (a lost stage's path). */
void sched_peers_park(sched_t *s, const char *why);

/* ---- sched_req.c ----------------------------------------------------------------- */

/* Sends ev to q's client; nonzero when the client cannot be reached. */
int sched_req_event(sched_t *s, req_t *q, G4__V1__GenerateEvent *ev);
/* The one end of a request: an error event, or done (q->finish says why). Both free q. */
void sched_req_fail(sched_t *s, req_t *q, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void sched_req_done(sched_t *s, req_t *q);
/* Frees q (or, with a batch out, marks it R_FINISHING until the batch returns). */
void sched_req_free(sched_t *s, req_t *q);
/* The client is gone (an event could not go out): the request is cancelled. */
void sched_req_client_gone(sched_t *s, req_t *q);
/* A call that could not go out, or was lost with its daemon, waits for one. */
void sched_req_call_lost(req_t *q, int kind);
/* q's ids against the pipeline's vocabulary (soft-token rows aside); fails q
 * (RANGE) and returns nonzero on the first id outside it. */
int sched_req_check_ids(sched_t *s, req_t *q);
/* Sends a tokenizer call for q (env borrowed); G4_ERR_UNAVAILABLE without a tokenizer. */
int sched_req_call(sched_t *s, req_t *q, int kind, G4__V1__Envelope *env);
void sched_req_render(sched_t *s, req_t *q);
void sched_req_tokenize(sched_t *s, req_t *q, const uint8_t *text, size_t len, int add_bos);
/* The prompt (with its soft tokens) is complete: Started goes out, q is queued. */
void sched_req_started(sched_t *s, req_t *q);
/* GenerateRequest / Cancel from the ROUTER; a tokenizer's reply (m borrowed). */
void sched_req_generate(sched_t *s, g4_msg_t *m);
void sched_req_cancel(sched_t *s, g4_msg_t *m);
void sched_req_on_tokenizer(sched_t *s, int ti, g4_msg_t *m);
/* Deadlines, lost calls, park timeouts, progress and keepalive events. */
void sched_req_timers(sched_t *s, uint64_t now);

/* ---- sched_text.c ------------------------------------------------------------------ */

/* Sends q's generated ids not yet detokenized (one call out at a time). */
void sched_text_send_detok(sched_t *s, req_t *q);
void sched_text_on_detok(sched_t *s, req_t *q, G4__V1__DetokenizeReply *r);
/* A Progress event: prompt rows computed, with the share of the chunk in flight. */
void sched_text_progress(sched_t *s, req_t *q, uint64_t now);

/* ---- sched_cache.c ------------------------------------------------------------------ */

/* The chain changed (or was lost): the index starts empty for its stages (what it knew is dropped). */
void sched_cache_chain(sched_t *s);
/* q is fed again from position 0 (a new pipeline, a failed restore: off = no cache for it). */
void sched_cache_req_restart(req_t *q, int off);
void sched_cache_req_free(req_t *q);
/* Before a batch is formed: a running request yet to start looks its prompt up (q and its view sq). */
void sched_cache_lookup(sched_t *s, req_t *q, sched_seq_t *sq);
/* The orders of a batch for its picked requests (fb's cache fields, storage in *mem: free with
 * sched_cache_orders_free after the send); b's px arrays filled. */
typedef struct sched_cache_mem sched_cache_mem_t;
sched_cache_mem_t *sched_cache_orders(sched_t *s, batch_t *b, G4__V1__ForwardBatch *fb);
void sched_cache_orders_free(sched_cache_mem_t **mem);
/* The batch came back: request i of it ran (ok) or not; lost: chunks a stage could not keep. */
void sched_cache_result(sched_t *s, const batch_t *b, int i, int ok, const uint64_t *lost, size_t n_lost);
/* The StatusReply's part. */
void sched_cache_status(sched_t *s, G4__V1__PrefixCacheStatus *st);

/* ---- sched_media.c ------------------------------------------------------------------ */

/* The prompt's ids are known: check the placeholders and encode the media, or queue q. */
void sched_media_prompt_ready(sched_t *s, req_t *q);
/* Sends q's media without embeddings to the newest encoder. */
void sched_media_send(sched_t *s, req_t *q);
void sched_media_on_reply(sched_t *s, int ei, g4_msg_t *m);

#endif
