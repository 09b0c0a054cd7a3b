/* shard_service — one stage of the forward chain (library; shardd's main.c
 * is the thin wrapper). Owns layers [begin, end) of a model, the KV cache of
 * every sequence slot, and on the last stage the sampler of each slot. */
#ifndef SHARD_SERVICE_H
#define SHARD_SERVICE_H

#include <stdatomic.h>

#include "g4_daemon.h"
#include "g4_model.h"
#include "g4_sampler.h"
#include "g4_wire.h"
#include "shard_prefix.h"
#include "shard_spec.h"

#define SHARD_MAX_PEERS 16
#define SHARD_CHAINS 4 /* chains remembered: batches of the previous ones may still travel */

/* Where this shard may send, from one Chain the scheduler sent. */
typedef struct shard_hop {
    uint64_t seq;      /* 0: empty */
    char next[256];    /* the stage after this one ("" when this one is the last) */
    char results[256]; /* the scheduler's results endpoint */
} shard_hop_t;

typedef struct shard_peer {
    char ep[256];
    void *sock; /* PUSH */
} shard_peer_t;

/* A sequence this stage refuses (its request fails alone). */
typedef struct shard_bad {
    uint32_t slot;
    int code;
    char msg[200];
} shard_bad_t;

typedef struct shard_failed {
    G4__V1__SlotError e;
    G4__V1__Error r;
} shard_failed_t;

typedef struct shard {
    g4_model_t *model;
    g4_ctx_t *ctx;
    const g4_hparams_t *hp;
    int begin, end, first, last;
    int n_slots, n_ubatch;
    int *slot_seq;            /* slot -> ctx sequence id (-1: none) */
    g4_sampler_t **slot_smp;  /* last stage */
    int *slot_logprobs;
    uint8_t *slot_sampled;
    uint8_t *slot_past_sample; /* per batch: a sample row of the slot came already */
    int32_t *seq_buf;         /* [n_ubatch] */
    int8_t *want_buf;         /* [n_ubatch] */    /* the slot has sampled: its rows are ids already accepted */
    const char *name;
    void *zctx;
    shard_peer_t peers[SHARD_MAX_PEERS];
    int n_peers;
    float *hidden, *ple, *logits;
    uint64_t busy_us, n_batches, n_errors;
    g4_daemon_work_t *work;   /* where shard_handle publishes its progress (NULL: nowhere) */
    int min_forward_ms;       /* fault injection: every forward pass lasts at least this long */
    uint64_t epoch;           /* of the scheduler whose slots these are (ForwardBatch.epoch) */
    /* the next hops the scheduler registered (shard_set_chain, from the control
     * thread; read by the worker): a batch naming any other endpoint is refused */
    int check_route;          /* 1 with a scheduler; standalone shards follow the route they are given */
    int route_wait_ms;        /* how long a batch waits for the Chain that names its route (1000) */
    shard_bad_t *bad;         /* [cap_bad] the batch's refused sequences (n_bad) */
    int n_bad, cap_bad;
    G4__V1__SlotError **failed_p; /* the batch's failed list as it goes on (one block with failed_e) */
    shard_failed_t *failed_e;
    size_t cap_failed;
    struct shard_hops *hops;  /* (a mutex and SHARD_CHAINS shard_hop_t) */
    /* the worker thread (shard_worker_start) and what it publishes for heartbeats */
    g4_worker_t worker;
    _Atomic uint64_t batches_pub, errors_pub, weights_ready, weights_ready_ms;
    /* the prefix cache (NULL: off), what its chunks cost, the chunks the batch could not keep */
    shard_store_t *store;
    g4_chunk_cost_t cache_cost;
    _Atomic uint64_t cache_bytes_pub, cache_chunks_pub;
    uint64_t *lost;
    size_t n_lost, cap_lost;
    /* speculative decoding: every stage marks a slot before a verification
     * pass and goes back to the kept rows when its next rows come; the last
     * stage's drafter (NULL: none) and its counters */
    g4_draft_mark_t *slot_mark;
    uint8_t *slot_marked;
    shard_spec_t *spec;
    int spec_hidden; /* the drafter reads the final hidden rows (an assistant) */
    float *spec_p;   /* [n_vocab] the target's distribution (temperature) */
    int32_t *vlast;  /* [n_slots] per batch: the slot's last sample row (-1 none) */
    uint8_t *vdone;  /* [n_slots] per batch: the slot's verification ended (a draft not confirmed) */
    int32_t *vemit;  /* [n_slots] per batch: ids sampled for the slot */
    _Atomic uint64_t spec_drafted, spec_accepted, spec_passes;
} shard_t;

typedef struct shard_params {
    const char *model_path, *name;
    int begin, end;       /* end = -1: to the last layer */
    int n_slots, n_ctx, n_ubatch, kv_type; /* kv_type: G4_KV_* */
    int gpu;              /* 0: the CPU; N + 1: CUDA device N (g4_ctx_params.gpu) */
    int min_forward_ms;   /* fault injection (tests): stretch every forward pass to this */
    int64_t cache_mb;     /* prefix cache budget in MiB: 0 none, < 0 a quarter of the memory available */
    shard_spec_params_t spec; /* the drafter (spec.path NULL: none; the last stage only) */
} shard_params_t;

int shard_init(shard_t *s, void *zctx, const shard_params_t *p, g4_err_t *err);
void shard_free(shard_t *s);
/* Runs one ForwardBatch and pushes the result on along its route (on the
 * thread that owns the shard: its worker, never the heartbeat loop). */
void shard_handle(shard_t *s, g4_msg_t *m);
/* A Chain from the scheduler (control thread): where this shard may send next. */
void shard_set_chain(shard_t *s, const G4__V1__Chain *ch);
/* The largest ForwardBatch frame this shard can legitimately receive (ZMQ_MAXMSGSIZE of its data socket). */
int64_t shard_max_frame(const shard_t *s);
/* Drops the given slots (on the shard's thread). */
void shard_release(shard_t *s, const uint32_t *slots, size_t n);

/* Starts the worker thread: it takes `data` (the bound PULL socket; the
 * caller no longer touches it) and runs every ForwardBatch, so the caller's
 * thread stays free to heartbeat whatever the batch costs. */
int shard_worker_start(shard_t *s, void *data, g4_err_t *err);
/* From the control thread: the worker drops these slots (in order with its work). */
void shard_worker_release(shard_t *s, const uint32_t *slots, size_t n);
/* Asks the worker to stop after its current batch and joins it. */
void shard_worker_stop(shard_t *s);

#endif
