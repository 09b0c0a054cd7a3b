/* sched_prefix — the prefix cache's index, as pure functions: a tree of the
 * prompt chunks the stages keep (shardd/shard_prefix.h), keyed by the rows'
 * keys (token ids; soft-token rows by their media's content hash), and the
 * budgets of the stages it must fit. No sockets, no protobuf: sched_cache.c
 * turns its answers into the orders of each ForwardBatch; tests/unit/
 * test_sched.c checks it.
 *
 * A node is one chunk: positions [begin, end) of a prompt, one ubatch as the
 * scheduler fed it, under the node holding the chunk before it. Prompts are
 * fed in the same ubatches from position 0 whatever is cached, so two prompts
 * with the same rows share their chunks up to the one where they part. A prompt
 * can start at any position of a chunk on its path (chunks keep every
 * layer's rows and the cache layout before them).
 *
 * Restoring at L is exact (bit-identical to a cold prefill) when every chunk
 * on the path is the ubatch the new prompt would be fed in, and the chunk
 * holding L took the same attention kernel as the new prompt's ubatch there
 * (one row, under 64, 64 or more): spx_match checks both. */
#ifndef SCHED_PREFIX_H
#define SCHED_PREFIX_H

#include <stdint.h>

/* A stage's budget and accounting (Register.cache_*). */
typedef struct spx_stage {
    uint64_t budget, row, fixed;
} spx_stage_t;

#define SPX_MAX_STAGES 32

typedef struct spx_node {
    uint64_t id;       /* the chunk's id on the stages (0: a free node) */
    int parent;        /* node index, -1: the chunk starts at position 0 */
    int begin, end;
    uint64_t *keys;    /* [end - begin] */
    int pending;       /* its save is out: not restorable yet */
    int n_child, pin;
    uint64_t used;     /* LRU tick */
} spx_node_t;

typedef struct spx {
    spx_node_t *n;
    int n_nodes, cap;
    spx_stage_t st[SPX_MAX_STAGES];
    int n_st;
    uint64_t bytes[SPX_MAX_STAGES]; /* accounted per stage */
    uint64_t tick, next_id, evictions;
    int n_live;
} spx_t;

/* The result of a lookup. */
typedef struct spx_match {
    int n_keep;      /* positions restored (0: nothing) */
    int vstart;      /* first position of the cold ubatch holding n_keep */
    int n_path;      /* chunks, from position 0: path[0..n_path) (node indices) */
    int wait;        /* a chunk being computed would give more: better wait for it */
} spx_match_t;

void spx_init(spx_t *x);
void spx_fini(spx_t *x);
/* Forgets every node (their ids into drop[] up to cap_drop, the count
 * returned) and takes the stages of a new chain. */
int spx_reset(spx_t *x, const spx_stage_t *st, int n_st, uint64_t *drop, int cap_drop);
/* Bytes a chunk takes on stage k. */
uint64_t spx_cost(const spx_t *x, int k, int begin, int end);

/* The longest restorable prefix of a prompt of n rows (keys[0..n)) fed in
 * ubatches starting at starts[0..n_starts) (starts[0] = 0): at most n - 1
 * positions (the last row is computed for its logits). path: room for
 * n_starts entries. Touches the path (LRU) when found. grow[0..n_grow):
 * nodes whose request computes the chunk after them next: a match ending at
 * one of them waits for that chunk, as for one being computed. */
spx_match_t spx_match(spx_t *x, const uint64_t *keys, int n, const int *starts, int n_starts, int *path,
                      const int *grow, int n_grow);

/* A new chunk [begin, end) under node parent (-1 at position 0): returns the
 * node to save (pending), or -1 when it cannot be kept (budget; a parent that
 * is gone: parent_id does not match). *same: an equal chunk already kept
 * (returned instead, nothing to save). Chunks evicted to make room go into
 * drop[] (*n_drop, up to cap_drop). */
int spx_add(spx_t *x, int parent, uint64_t parent_id, int begin, int end, const uint64_t *keys, int *same, uint64_t *drop, int *n_drop, int cap_drop);
/* Its save came back: restorable from now on. */
void spx_ready(spx_t *x, int node);
/* Forgets a node and everything under it (ids into drop[]). */
void spx_remove(spx_t *x, int node, uint64_t *drop, int *n_drop, int cap_drop);
/* Node index of id, -1 when gone. */
int spx_find(const spx_t *x, uint64_t id);
/* The stage with the most bytes, and the smallest budget. */
uint64_t spx_bytes_max(const spx_t *x);
uint64_t spx_budget_min(const spx_t *x);

/* The attention kernel a ubatch of n rows of one sequence takes (0: one row, 1: under 64, 2: 64 or more). */
static inline int spx_kernel_class(int n) { return n <= 1 ? 0 : n < 64 ? 1 : 2; }

#endif
