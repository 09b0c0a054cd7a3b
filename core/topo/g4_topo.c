/* g4_topo — see g4_topo.h. The hwloc calls of the tree, one topology load per
 * g4_topo_t. */
#include "g4_topo.h"

#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "g4_alloc.h"

#define S_NODES_MAX 256

struct g4_topo {
    hwloc_topology_t hw;
    int n_nodes;
    g4_topo_node_t nodes[S_NODES_MAX];
    hwloc_obj_t obj[S_NODES_MAX]; /* the NUMA node objects (NULL: the machine as one node) */
};

g4_topo_t *g4_topo_load(const char *desc, g4_err_t *err)
{
    g4_topo_t *t = g4_calloc(1, sizeof *t);
    if (!t) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (hwloc_topology_init(&t->hw)) {
        g4_err_set(err, G4_ERR_STATE, "hwloc_topology_init failed");
        g4_free(t);
        return NULL;
    }
    if (desc) {
        const size_t n = strlen(desc);
        const int rc = n > 4 && !strcmp(desc + n - 4, ".xml") ? hwloc_topology_set_xml(t->hw, desc)
                                                              : hwloc_topology_set_synthetic(t->hw, desc);
        if (rc) {
            g4_err_set(err, G4_ERR_RANGE, "topology '%s' is neither a readable hwloc XML file nor a synthetic description",
                       desc);
            goto fail;
        }
    }
    if (hwloc_topology_load(t->hw)) {
        g4_err_set(err, G4_ERR_STATE, "hwloc could not load the topology");
        goto fail;
    }
    const int nn = hwloc_get_nbobjs_by_type(t->hw, HWLOC_OBJ_NUMANODE);
    for (int i = 0; i < nn && t->n_nodes < S_NODES_MAX; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(t->hw, HWLOC_OBJ_NUMANODE, (unsigned)i);
        g4_topo_node_t *nd = &t->nodes[t->n_nodes];
        nd->index = t->n_nodes;
        nd->os_index = (int)o->os_index;
        nd->memory_bytes = o->attr ? o->attr->numanode.local_memory : 0;
        nd->n_cores = hwloc_get_nbobjs_inside_cpuset_by_type(t->hw, o->cpuset, HWLOC_OBJ_CORE);
        struct hwloc_location from = {.type = HWLOC_LOCATION_TYPE_CPUSET, .location.cpuset = o->cpuset};
        hwloc_uint64_t bw = 0;
        nd->bandwidth_mbs = hwloc_memattr_get_value(t->hw, HWLOC_MEMATTR_ID_BANDWIDTH, o, &from, 0, &bw) == 0 ? bw : 0;
        t->obj[t->n_nodes++] = o;
    }
    if (t->n_nodes == 0) { /* no NUMA information: the whole machine is one node */
        hwloc_obj_t root = hwloc_get_root_obj(t->hw);
        t->nodes[0] = (g4_topo_node_t){.index = 0,
                                       .os_index = 0,
                                       .n_cores = hwloc_get_nbobjs_by_type(t->hw, HWLOC_OBJ_CORE),
                                       .memory_bytes = root->total_memory};
        t->n_nodes = 1;
    }
    return t;
fail:
    hwloc_topology_destroy(t->hw);
    g4_free(t);
    return NULL;
}

void g4_topo_destroy(g4_topo_t **pt)
{
    g4_topo_t *t = pt ? *pt : NULL;
    if (!t) return;
    hwloc_topology_destroy(t->hw);
    g4_free(t);
    *pt = NULL;
}

int g4_topo_n_nodes(const g4_topo_t *t) { return t->n_nodes; }

const g4_topo_node_t *g4_topo_node(const g4_topo_t *t, int i)
{
    return i >= 0 && i < t->n_nodes ? &t->nodes[i] : NULL;
}

/* binds the process to set; its size, or G4_ERR_STATE */
static int s_bind_cpus(g4_topo_t *t, hwloc_const_bitmap_t set, char *cores, size_t cores_size, g4_err_t *err)
{
    if (hwloc_set_cpubind(t->hw, set, HWLOC_CPUBIND_PROCESS))
        return g4_err_set(err, G4_ERR_STATE, "could not pin to the requested cores");
    if (cores && cores_size) hwloc_bitmap_list_snprintf(cores, cores_size, set);
    return hwloc_bitmap_weight(set);
}

int g4_topo_bind_node(g4_topo_t *t, int i, int *mem_bound, char *cores, size_t cores_size, g4_err_t *err)
{
    if (mem_bound) *mem_bound = 0;
    hwloc_obj_t node = i >= 0 && i < t->n_nodes ? t->obj[i] : NULL;
    if (!node)
        return g4_err_set(err, G4_ERR_RANGE, "NUMA node %d does not exist (this machine has %d)", i,
                          hwloc_get_nbobjs_by_type(t->hw, HWLOC_OBJ_NUMANODE));
    const int mem = hwloc_set_membind(t->hw, node->nodeset, HWLOC_MEMBIND_BIND,
                                      HWLOC_MEMBIND_PROCESS | HWLOC_MEMBIND_BYNODESET) == 0;
    if (mem_bound) *mem_bound = mem;
    return s_bind_cpus(t, node->cpuset, cores, cores_size, err);
}

int g4_topo_bind_cores(g4_topo_t *t, const char *list, char *cores, size_t cores_size, g4_err_t *err)
{
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    int rc;
    if (hwloc_bitmap_list_sscanf(set, list) || hwloc_bitmap_iszero(set))
        rc = g4_err_set(err, G4_ERR_RANGE, "bad --cpuset '%s'", list);
    else
        rc = s_bind_cpus(t, set, cores, cores_size, err);
    hwloc_bitmap_free(set);
    return rc;
}

int g4_topo_bind_memory(g4_topo_t *t, int i, const void *p, size_t n)
{
    hwloc_obj_t node = i >= 0 && i < t->n_nodes ? t->obj[i] : NULL;
    if (!node) return G4_ERR_RANGE;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t b = (uintptr_t)p & ~(page - 1), e = ((uintptr_t)p + n + page - 1) & ~(page - 1);
    return hwloc_set_area_membind(t->hw, (const void *)b, e - b, node->nodeset, HWLOC_MEMBIND_BIND,
                                  HWLOC_MEMBIND_MIGRATE | HWLOC_MEMBIND_BYNODESET) == 0
               ? G4_OK
               : G4_ERR_STATE;
}
