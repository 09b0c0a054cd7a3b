/* g4_topo — the machine as placement sees it, and binding to it. The only
 * user of hwloc in the tree.
 *
 * A topology is this machine's (hwloc honours $HWLOC_XMLFILE and
 * $HWLOC_SYNTHETIC, which reach the daemons a g4 command starts, so a test
 * can give a whole stack a machine it does not have), or one named by a
 * description: an hwloc XML export (a path ending in .xml) or a synthetic
 * one ("numa:2(memory=64GB) core:8 pu:2"). Its NUMA nodes carry their cores,
 * memory and, when hwloc knows it (firmware HMAT, an XML export), the memory
 * bandwidth from their own cores. A topology that is not this machine binds
 * nothing and says it did (hwloc's dummy binding).
 *
 * Used by `g4 plan` and the default stack (with g4_plan), and by shardd to
 * pin itself and its weights to a node.
 *
 * Extension point, GPUs: hwloc lists them as OS devices (HWLOC_OBJ_OSDEV_GPU
 * / _COPROC) under the NUMA node they hang from; a g4_topo_gpu_t list beside
 * the nodes (memory, node) is where a CUDA shard's placement would come from.
 * Not done: no backend computes on a GPU yet. */
#ifndef G4_TOPO_H
#define G4_TOPO_H

#include <stddef.h>
#include <stdint.h>

#include "g4_err.h"

typedef struct g4_topo g4_topo_t;

typedef struct g4_topo_node {
    int index;              /* logical index 0..n-1: what shardd --numa-node takes */
    int os_index;           /* the OS's number for it (numactl, /sys)       */
    int n_cores;
    uint64_t memory_bytes;  /* local memory, 0: unknown                     */
    uint64_t bandwidth_mbs; /* MiB/s from the node's own cores, 0: unknown  */
} g4_topo_node_t;

/* Reads a topology: desc NULL for this machine, else an XML file (*.xml) or a
 * synthetic description. A machine without NUMA information is one node
 * holding all cores and memory. Caller destroys. */
g4_topo_t *g4_topo_load(const char *desc, g4_err_t *err);
void g4_topo_destroy(g4_topo_t **t);

/* Number of NUMA nodes (>= 1), and node i (borrowed, valid while t lives;
 * NULL when i is out of range). */
int g4_topo_n_nodes(const g4_topo_t *t);
const g4_topo_node_t *g4_topo_node(const g4_topo_t *t, int i);

/* Binds the calling process (all its threads: its OpenMP team too) to node
 * i's cores and its later allocations to node i's memory. Returns the number
 * of cores bound to (> 0) and writes them as a list ("0-7,16-23") to cores;
 * G4_ERR_RANGE when the node does not exist, G4_ERR_STATE when the cores
 * could not be bound. *mem_bound (may be NULL): 1 when the memory binding
 * took, 0 when it did not (the cores still did). */
int g4_topo_bind_node(g4_topo_t *t, int i, int *mem_bound, char *cores, size_t cores_size, g4_err_t *err);
/* Binds the calling process to the cores of a list ("0-7,16-23"); returns
 * their number, G4_ERR_RANGE for a list that names none, G4_ERR_STATE when
 * binding failed. */
int g4_topo_bind_cores(g4_topo_t *t, const char *list, char *cores, size_t cores_size, g4_err_t *err);
/* Moves the pages of [p, p + n) (rounded out to whole pages) to node i's
 * memory and keeps them there: G4_OK, or G4_ERR_RANGE / G4_ERR_STATE. */
int g4_topo_bind_memory(g4_topo_t *t, int i, const void *p, size_t n);

#endif
