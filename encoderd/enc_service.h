/* enc_service — the encoderd request handler: Encode requests on a ROUTER
 * socket, answered from a content-hash cache or by a worker thread that runs
 * the towers (so the daemon keeps answering heartbeats and cache hits while
 * a large image is being encoded). */
#ifndef ENC_SERVICE_H
#define ENC_SERVICE_H

#include <stdint.h>

#include "enc_model.h"
#include "g4_daemon.h"
#include "g4_wire.h"

#define ENC_MAX_MEDIA_BYTES (64u << 20)
#define ENC_MAX_JOBS 64

typedef struct enc_service enc_service_t;

enum {
    ENC_C_REQUESTS, ENC_C_CACHE_HITS, ENC_C_CACHE_MISSES, ENC_C_ERRORS, ENC_C_CACHE_ENTRIES, ENC_C_CACHE_BYTES,
    ENC_C_TOKENS, ENC_C_ENCODE_MS, ENC_C_COUNT
};
extern const char *const enc_counter_names[ENC_C_COUNT];

/* sock: the bound ROUTER. cache_bytes: 0 disables the cache. */
enc_service_t *enc_service_new(enc_model_t *m, void *zctx, void *sock, uint64_t cache_bytes, g4_err_t *err);
void enc_service_free(enc_service_t **s);
/* The socket to poll besides `sock` (worker results). */
void *enc_service_results(enc_service_t *s);
/* One request from `sock` / results from the worker. */
void enc_service_handle(enc_service_t *s, g4_msg_t *m);
void enc_service_on_results(enc_service_t *s);
void enc_service_counters(const enc_service_t *s, uint64_t out[ENC_C_COUNT]);
/* encoderd's loop until g4_daemon_stop: requests on `sock`, the worker's
 * results, d's control messages and heartbeats (with the counters). */
void enc_service_run(enc_service_t *s, g4_daemon_t *d);

#endif
