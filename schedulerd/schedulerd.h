/* sched — schedulerd's logic (library; main.c is the thin wrapper).
 *
 * Sockets: one ROUTER for clients and daemons (GenerateRequest, Cancel,
 * Status; Register, Heartbeat), one PULL where the last shard delivers
 * ForwardResults, a PUSH to each shard and a DEALER to each tokenizer.
 *
 * Requests: text/chat prompts go to tokenizerd first; then each request gets
 * a sequence slot and joins the running batches (continuous batching). A
 * prompt is fed in chunks of at most n_ubatch rows; decoding sequences feed
 * one row per step. Up to one micro-batch per pipeline stage is in flight,
 * each with a disjoint set of sequences, so every shard has work. Sampled ids
 * go through tokenizerd's incremental detokenizer and out to the client as
 * token events; every request ends with exactly one done or error event.
 *
 * The pieces (sched.c, sched_peers.c, sched_req.c, sched_text.c,
 * sched_media.c, sched_batch.c) are mapped in sched_internal.h. */
#ifndef SCHED_H
#define SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "g4_wire.h"

typedef struct sched sched_t;

typedef struct sched_params {
    const char *listen;     /* ROUTER endpoint (clients + daemons) */
    const char *results;    /* PULL endpoint for results from the last shard */
    int n_ubatch;           /* rows per micro-batch (default 512) */
    int max_queue;          /* queued requests before refusing (default 1024) */
    int heartbeat_timeout_ms; /* silence that makes a daemon gone (default 1500) */
    int park_timeout_ms;    /* requests of a lost stage wait this long for a new pipeline (default 30000) */
    int no_migrate;         /* fail the requests of a lost stage at once (the old behaviour) */
    int stuck_after_ms;     /* a busy stage without progress this long (and 20x its last
                               batch time) is reported stuck (default 120000) */
    int batch_timeout_ms;   /* a batch no stage of its chain has worked on for this long is lost:
                               its requests are parked and fed again (default 30000) */
    int max_stop;           /* stop strings per request (default 16) */
    int max_stop_bytes;     /* their bytes together (default 4096) */
    int no_prefix_cache;    /* never restore prompts from the shards' prefix caches, nor keep any */
} sched_params_t;

sched_t *sched_new(void *zctx, const sched_params_t *p, g4_err_t *err);
void sched_free(sched_t **s);
/* One turn of the event loop: waits up to timeout_ms for messages. */
void sched_poll(sched_t *s, int timeout_ms);
/* Stop admitting; returns 1 once nothing is in flight. */
int sched_drain(sched_t *s);

#endif
