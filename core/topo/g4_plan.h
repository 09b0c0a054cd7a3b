/* g4_plan — where a model's layers go: pure arithmetic from what each layer
 * costs (weights + KV cache, in bytes) and what each NUMA node offers (memory,
 * bandwidth) to the stages' layer bounds, each stage's node and each stage's
 * memory. No hwloc, no GGUF, no I/O: `g4 plan` fills the input from the
 * model's header and g4_topo, prints the result, and the default stack
 * starts its shards from the same result; tests feed synthetic machines.
 *
 * The split: one stage per node (or n_shards), layers first evenly; with
 * every node's memory bandwidth known, in proportion to it (each stage
 * streams its weights once per decoded token, so the stages take equal
 * time), else in proportion to each node's memory; a bandwidth split that
 * does not fit a node's memory falls back to the memory split. Any layer may
 * start a stage (a KV-sharing layer gets its source's rows from the stage
 * before); every stage keeps at least one layer. */
#ifndef G4_PLAN_H
#define G4_PLAN_H

#include <stdint.h>

#include "g4_topo.h"

#define G4_PLAN_MAX 64

/* What the model costs (bytes); arrays of n_layer, borrowed. */
typedef struct g4_plan_model {
    int n_layer;
    const uint64_t *layer_weight_bytes; /* tensors blk.L.*                          */
    const uint64_t *layer_kv_bytes;     /* its own KV cache, all slots (0: shares)  */
    const int *kv_source;               /* layer whose cache layer L reads          */
    uint64_t embd_bytes;                /* token and per-layer embeddings: stage 0  */
    uint64_t head_bytes;                /* output norm + LM head: the last stage    */
    uint64_t tied_bytes;                /* of head_bytes, the embedding it reuses   */
    uint64_t stage_bytes;               /* every stage besides: scratch, metadata   */
} g4_plan_model_t;

typedef enum {
    G4_PLAN_SPLIT_SINGLE,    /* one stage, or one node: even split by layer count */
    G4_PLAN_SPLIT_MEMORY,    /* in proportion to the nodes' memory                */
    G4_PLAN_SPLIT_BANDWIDTH, /* in proportion to their memory bandwidth           */
} g4_plan_split_t;

typedef struct g4_plan_stage {
    int layer_begin, layer_end; /* [begin, end)                                   */
    int node;                   /* index into the nodes (shardd --numa-node)      */
    uint64_t weight_bytes, kv_bytes, total_bytes;
    int fits;                   /* total fits the node's memory (unknown: fits)   */
} g4_plan_stage_t;

typedef struct g4_plan {
    int n_stages;
    g4_plan_split_t split;
    int fits; /* every stage fits */
    g4_plan_stage_t stages[G4_PLAN_MAX];
} g4_plan_t;

/* Even bounds for n shards of n_layer layers: bounds[0] = 0 < … < bounds[k]
 * = n_layer, k = min(n, n_layer, max_bounds - 1) (at least 1); returns k. */
int g4_plan_even(int n_layer, int n_shards, int *bounds, int max_bounds);

/* The plan of model on nodes[0..n_nodes) with n_shards stages (0: one per
 * node); stage i sits on node i % n_nodes. Fills *plan; returns its number
 * of stages. */
int g4_plan_make(const g4_plan_model_t *model, const g4_topo_node_t *nodes, int n_nodes, int n_shards, g4_plan_t *plan);

const char *g4_plan_split_name(g4_plan_split_t split); /* "single" "memory" "bandwidth" */

/* ---- devices: GPUs and the CPU (g4 up --devices cuda:0,cuda:1,cpu) ---------- */

/* A device a stage may run on, in chain order. A GPU holds its stage's
 * layers, their caches and the LM head in device memory (the token
 * embedding stays in host memory); the CPU holds everything in its own. */
typedef struct g4_plan_device {
    int gpu;               /* N + 1 for cuda:N, 0 for the CPU                 */
    uint64_t memory_bytes; /* what it may hold (0: unknown, no limit)        */
} g4_plan_device_t;

/* The plan of model on devs[0..n) in that order, one stage per device:
 * when the GPUs hold every layer, layers in proportion to their memory and
 * the CPUs are left out (n_stages < n); else each GPU takes as many layers
 * as fit (from the chain's ends inwards) and the CPUs share the rest
 * evenly. stage.node is the index into devs. Returns n_stages (0: fewer
 * layers than devices it needs). */
int g4_plan_devices(const g4_plan_model_t *model, const g4_plan_device_t *devs, int n, g4_plan_t *plan);

#endif
