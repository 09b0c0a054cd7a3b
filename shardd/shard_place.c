/* shard_place — see shard_place.h. */
#include "shard_place.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "g4_log.h"
#include "g4_topo.h"

int shard_place_layers(const char *spec, int *begin, int *end, char *name, size_t name_size)
{
    *begin = 0, *end = -1;
    if (spec) {
        char *e;
        *begin = (int)strtol(spec, &e, 10);
        if (*e != '-' && *e != ':') return -1;
        *end = !strcmp(e + 1, "end") ? -1 : (int)strtol(e + 1, NULL, 10);
    }
    if (*end < 0) snprintf(name, name_size, "shard-%d-end-%d", *begin, (int)getpid());
    else snprintf(name, name_size, "shard-%d-%d-%d", *begin, *end, (int)getpid());
    return 0;
}

int shard_place_pin(int numa_node, const char *cpuset)
{
    if (numa_node < 0 && !cpuset) return 0;
    g4_topo_t *topo = g4_topo_load(NULL, NULL);
    if (!topo) return 0;
    g4_err_t err;
    char cores[256];
    int mem = 1;
    const int n = numa_node >= 0 ? g4_topo_bind_node(topo, numa_node, &mem, cores, sizeof cores, &err)
                                 : g4_topo_bind_cores(topo, cpuset, cores, sizeof cores, &err);
    if (numa_node >= 0 && n != G4_ERR_RANGE && !mem) g4_log_warn("shardd", "could not bind memory to NUMA node %d", numa_node);
    g4_topo_destroy(&topo);
    if (n == G4_ERR_RANGE) {
        g4_log_error("shardd", "%s", err.msg);
        return -1;
    }
    if (n < 0) {
        g4_log_warn("shardd", "%s", err.msg);
        return 0;
    }
    g4_log_info("shardd", "pinned to cores %s", cores);
    return n;
}

/* The KV cache and buffers allocated later follow the process binding set
 * by shard_place_pin; the weights were mapped or copied before it mattered. */
void shard_place_bind_weights(int numa_node, const g4_model_t *m)
{
    g4_topo_t *topo = numa_node >= 0 ? g4_topo_load(NULL, NULL) : NULL;
    if (!topo) return;
    const int have_node = numa_node < g4_topo_n_nodes(topo);
    uint64_t bound = 0, failed = 0;
    const void *p;
    size_t n;
    const int copy = g4_model_weights_copy(m, &p, &n);
    for (int i = 0; have_node && (copy ? i == 0 : g4_model_weights(m, i, &p, &n)); i++) {
        if (g4_topo_bind_memory(topo, numa_node, p, n) == G4_OK) bound += n;
        else failed += n;
    }
    if (failed)
        g4_log_warn("shardd", "could not move %.1f MB of weights to NUMA node %d (%.1f MB moved)", failed / 1e6,
                    numa_node, bound / 1e6);
    else if (have_node)
        g4_log_info("shardd", "weights bound to NUMA node %d: %.1f MB", numa_node, bound / 1e6);
    g4_topo_destroy(&topo);
}
