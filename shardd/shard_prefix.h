/* shard_prefix — a shard's part of the prefix cache: the chunks of its
 * layers' caches the scheduler told it to keep (g4_prefix.h), under a byte
 * budget. The scheduler decides what is kept, restored and dropped (it keeps
 * the index, and every stage of a chain gets the same orders in each
 * ForwardBatch); this store only carries them out, and refuses a chunk that
 * would exceed its budget (reported back as lost). */
#ifndef SHARD_PREFIX_H
#define SHARD_PREFIX_H

#include <stdint.h>

#include "g4_prefix.h"
#include "g4_wire.h"

typedef struct shard_store shard_store_t;

shard_store_t *shard_store_new(uint64_t budget);
void shard_store_free(shard_store_t **st);
/* Forgets every chunk (a new scheduler: its index starts empty). */
void shard_store_clear(shard_store_t *st);
void shard_store_drop(shard_store_t *st, const uint64_t *ids, size_t n);
/* The chunks ids[0..n) in order (NULL where one is not kept); returns how many were found. */
int shard_store_get(shard_store_t *st, const uint64_t *ids, size_t n, g4_kv_chunk_t **out);
/* Keeps positions [begin, end) of ctx sequence seq as chunk id; G4_ERR_NOMEM when it does not fit the budget. */
int shard_store_save(shard_store_t *st, g4_ctx_t *ctx, int seq, uint64_t id, int begin, int end, g4_err_t *err);
uint64_t shard_store_bytes(const shard_store_t *st);
uint64_t shard_store_budget(const shard_store_t *st);
int shard_store_count(const shard_store_t *st);

/* The default budget: a quarter of the memory available now (MemAvailable), in bytes. */
uint64_t shard_store_default_budget(void);

#endif
