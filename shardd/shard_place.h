/* shard_place — where a stage sits: which layers (the --layers text), which
 * cores (the process pinned through g4_topo), which NUMA node's memory holds
 * its weights. shardd's main calls these once at start; hwloc stays inside
 * core/topo. */
#ifndef SHARD_PLACE_H
#define SHARD_PLACE_H

#include <stddef.h>

#include "g4_model.h"

/* "A-B" or "A:B" (B may be "end": *end = -1); NULL: the whole model. Writes
 * the stage's default name (shard-A-B-PID, shard-A-end-PID) to name.
 * Returns 0, or -1 when the text is not of that form. */
int shard_place_layers(const char *spec, int *begin, int *end, char *name, size_t name_size);
/* Pins the process (and so its OpenMP threads) to NUMA node numa_node's
 * cores and binds its memory there, or to the cores of `cpuset` ("0-7,16-23");
 * neither (numa_node < 0, cpuset NULL): nothing. Returns the number of cores
 * in the set, 0 when not pinned, -1 when the node or the cores asked for do
 * not exist (logged). */
int shard_place_pin(int numa_node, const char *cpuset);
/* Moves the weights the shard multiplies with onto numa_node's memory: their
 * copy (g4_model_warm, COPY), or the file's pages, which sit wherever the page
 * cache put them (MAP). Logs what moved. numa_node < 0: nothing. */
void shard_place_bind_weights(int numa_node, const g4_model_t *m);

#endif
