/* g4 plan -m MODEL.gguf [--topology FILE.xml | --topology "SYNTHETIC"] [--shards N] [--ctx N] [--slots N] [--json]
 *
 * Where each shard of the model goes: one shard per NUMA node (or --shards),
 * layers in proportion to each node's memory bandwidth when hwloc knows it
 * (else to its memory), layers that share a KV cache
 * kept together; for each shard the weights it maps, its KV cache (F16, every
 * slot at full context; sliding layers hold window + ubatch cells; a
 * KV-sharing layer's shard also holds its source layer's cache) and
 * whether that fits in the node's memory. The topology is this machine's,
 * read with hwloc, or an hwloc XML export / synthetic description
 * (e.g. "numa:2 core:8 pu:1", memory per node as "numa:2(memory=64GB)"). */
#include <cjson/cJSON.h>
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "g4_alloc.h"
#include "g4_model.h"

#define PLAN_MAX 64

typedef struct plan_node {
    int os_index, cores;
    uint64_t memory;
    uint64_t bandwidth; /* MiB/s from the node's own cores (hwloc memory attribute), 0: unknown */
} plan_node_t;

static int s_topology(const char *topo_arg, plan_node_t *nodes, int max, char *why, size_t why_size)
{
    hwloc_topology_t t;
    if (hwloc_topology_init(&t)) {
        snprintf(why, why_size, "hwloc_topology_init failed");
        return -1;
    }
    if (topo_arg) {
        size_t n = strlen(topo_arg);
        int rc = n > 4 && !strcmp(topo_arg + n - 4, ".xml") ? hwloc_topology_set_xml(t, topo_arg)
                                                             : hwloc_topology_set_synthetic(t, topo_arg);
        if (rc) {
            snprintf(why, why_size, "topology '%s' is neither a readable hwloc XML file nor a synthetic description",
                     topo_arg);
            hwloc_topology_destroy(t);
            return -1;
        }
    }
    if (hwloc_topology_load(t)) {
        snprintf(why, why_size, "hwloc could not load the topology");
        hwloc_topology_destroy(t);
        return -1;
    }
    int nn = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE), k = 0;
    for (int i = 0; i < nn && k < max; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, (unsigned)i);
        nodes[k].os_index = (int)o->os_index;
        nodes[k].memory = o->attr ? o->attr->numanode.local_memory : 0;
        nodes[k].cores = hwloc_get_nbobjs_inside_cpuset_by_type(t, o->cpuset, HWLOC_OBJ_CORE);
        struct hwloc_location from = {.type = HWLOC_LOCATION_TYPE_CPUSET, .location.cpuset = o->cpuset};
        hwloc_uint64_t bw = 0;
        nodes[k].bandwidth = hwloc_memattr_get_value(t, HWLOC_MEMATTR_ID_BANDWIDTH, o, &from, 0, &bw) == 0 ? bw : 0;
        k++;
    }
    if (k == 0) { /* no NUMA information: the whole machine is one node */
        hwloc_obj_t root = hwloc_get_root_obj(t);
        nodes[0].os_index = 0;
        nodes[0].memory = root->total_memory;
        nodes[0].cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
        nodes[0].bandwidth = 0;
        k = 1;
    }
    hwloc_topology_destroy(t);
    return k;
}

static int s_layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4)) return -1;
    return atoi(name + 4);
}

static void s_gib(char *buf, size_t size, uint64_t b) { snprintf(buf, size, "%.2f GiB", (double)b / (1u << 30)); }

int cli_plan(int argc, char **argv)
{
    const char *model = NULL, *topo = NULL;
    int n_shards = 0, n_ctx = 4096, n_slots = 16, json = 0, n_ubatch = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) model = v, i++;
        else if (!strcmp(a, "--topology") && v) topo = v, i++;
        else if (!strcmp(a, "--shards") && v) n_shards = atoi(v), i++;
        else if ((!strcmp(a, "--ctx") || !strcmp(a, "-c")) && v) n_ctx = atoi(v), i++;
        else if (!strcmp(a, "--slots") && v) n_slots = atoi(v), i++;
        else if (!strcmp(a, "--json")) json = 1;
        else {
            cli_error("usage: g4 plan -m MODEL.gguf [--topology FILE.xml|SYNTHETIC] [--shards N] [--ctx N] [--slots N] "
                      "[--json]");
            return 2;
        }
    }
    if (!model || n_ctx <= 0 || n_slots <= 0) {
        cli_error("usage: g4 plan -m MODEL.gguf [--topology FILE.xml|SYNTHETIC] [--shards N] [--json]");
        return 2;
    }
    plan_node_t nodes[PLAN_MAX];
    char why[300];
    int n_nodes = s_topology(topo, nodes, PLAN_MAX, why, sizeof why);
    if (n_nodes < 0) {
        cli_error("%s", why);
        return 1;
    }
    g4_err_t err;
    g4_model_t *m = g4_model_load(model, 0, -1, &err);
    if (!m) {
        cli_error("%s", err.msg);
        return 1;
    }
    const g4_hparams_t *hp = g4_model_hparams(m);
    const int L = (int)hp->n_layer;
    const g4_gguf_t *g = g4_model_gguf(m);
    uint64_t *layer_w = g4_calloc((size_t)L, sizeof *layer_w), *layer_kv = g4_calloc((size_t)L, sizeof *layer_kv);
    uint64_t embd = 0, head = 0, tied_bytes = 0;
    int tied = 1;
    for (int64_t i = 0; i < g4_gguf_n_tensors(g); i++) {
        g4_tensor_t t;
        g4_gguf_tensor(g, i, &t);
        int l = s_layer_of(t.name);
        if (l >= 0 && l < L) layer_w[l] += t.n_bytes;
        else if (!strcmp(t.name, "output.weight")) head += t.n_bytes, tied = 0;
        else if (!strcmp(t.name, "output_norm.weight")) head += t.n_bytes;
        else embd += t.n_bytes; /* token_embd, per-layer embeddings, rope_freqs */
    }
    if (tied) /* the LM head reads the embedding matrix */
        for (int64_t i = 0; i < g4_gguf_n_tensors(g); i++) {
            g4_tensor_t t;
            g4_gguf_tensor(g, i, &t);
            if (!strcmp(t.name, "token_embd.weight")) head += t.n_bytes, tied_bytes = t.n_bytes;
        }
    int *kv_src = g4_calloc((size_t)L, sizeof *kv_src);
    for (int l = 0; l < L && kv_src; l++) kv_src[l] = g4_model_kv_source(m, l);
    for (int l = 0; l < L; l++) {
        if (g4_model_kv_source(m, l) != l) continue; /* reuses another layer's cache */
        const uint64_t hd = hp->is_swa[l] ? hp->hd_swa : hp->hd_full;
        uint64_t cells = (uint64_t)n_ctx;
        if (hp->is_swa[l] && hp->n_swa + (uint64_t)n_ubatch < cells) cells = hp->n_swa + (uint64_t)n_ubatch;
        layer_kv[l] = cells * hp->n_head_kv[l] * hd * 2 /* K, V */ * 2 /* F16 */ * (uint64_t)n_slots;
    }
    g4_model_destroy(&m);
    /* shards: one per node unless asked; layers by memory share */
    int want = n_shards > 0 ? n_shards : n_nodes;
    int bounds[PLAN_MAX + 1];
    int k = cli_split_layers(model, want, bounds, PLAN_MAX, why, sizeof why);
    if (k < 0) {
        cli_error("%s", why);
        g4_free(layer_w), g4_free(layer_kv), g4_free(kv_src);
        return 1;
    }
    /* Each stage streams its weights once per decoded token: with every node's
     * memory bandwidth known (hwloc's Bandwidth attribute: firmware HMAT, or an
     * XML topology) the layers go in proportion to it, so the stages take
     * equal time; else in proportion to memory. A bandwidth split that does
     * not fit a node's memory falls back to the memory split. */
    int by_bw = k > 1 && n_nodes > 1;
    for (int i = 0; i < k && by_bw; i++) by_bw = nodes[i % n_nodes].bandwidth > 0;
    int orig[PLAN_MAX + 1];
    memcpy(orig, bounds, sizeof(int) * (size_t)(k + 1));
    for (int pass = by_bw ? 0 : 1; pass < 2 && k > 1 && n_nodes > 1; pass++) {
        const int use_bw = pass == 0;
        memcpy(bounds, orig, sizeof(int) * (size_t)(k + 1));
        /* move the boundaries toward each node's share of the total */
        uint64_t share_total = 0, cost_total = 0;
        for (int i = 0; i < k; i++) share_total += use_bw ? nodes[i % n_nodes].bandwidth : nodes[i % n_nodes].memory;
        for (int l = 0; l < L; l++) cost_total += layer_w[l] + layer_kv[l];
        if (share_total > 0) {
            int kk = 0;
            int nb[PLAN_MAX + 1];
            nb[kk++] = 0;
            uint64_t acc = 0, target = 0;
            int l = 0;
            for (int i = 0; i < k - 1; i++) {
                const uint64_t share = use_bw ? nodes[i % n_nodes].bandwidth : nodes[i % n_nodes].memory;
                target += (uint64_t)((double)cost_total * (double)share / (double)share_total);
                while (l < L && acc + (layer_w[l] + layer_kv[l]) / 2 < target) acc += layer_w[l] + layer_kv[l], l++;
                /* any layer may start a stage (a KV-sharing layer gets its source
                 * layer's rows from the earlier stage); every stage keeps a layer */
                int best = l;
                if (best <= nb[kk - 1]) best = nb[kk - 1] + 1;
                if (best > L - (k - 1 - i)) best = L - (k - 1 - i);
                if (best >= L) break;
                nb[kk++] = best;
            }
            nb[kk] = L;
            /* keep the memory-weighted split only when it stays valid */
            int ok = kk == k;
            for (int i = 1; ok && i < kk; i++) ok = nb[i] > nb[i - 1];
            if (ok) memcpy(bounds, nb, sizeof(int) * (size_t)(kk + 1));
        }
        if (!use_bw) break;
        int fit = 1; /* the layers' weights and caches (embedding and head: checked below) */
        for (int i = 0; i < k && fit; i++) {
            uint64_t w = 0;
            for (int l = bounds[i]; l < bounds[i + 1]; l++) w += layer_w[l] + layer_kv[l];
            fit = nodes[i % n_nodes].memory == 0 || w <= nodes[i % n_nodes].memory;
        }
        if (fit) break;
        by_bw = 0; /* the memory split next */
    }
    cJSON *root = cJSON_CreateObject(), *arr = NULL;
    if (json) {
        cJSON_AddStringToObject(root, "model", model);
        cJSON_AddNumberToObject(root, "n_layer", L);
        cJSON_AddNumberToObject(root, "ctx", n_ctx);
        cJSON_AddNumberToObject(root, "slots", n_slots);
        cJSON_AddNumberToObject(root, "numa_nodes", n_nodes);
        cJSON_AddStringToObject(root, "split", k < 2 || n_nodes < 2 ? "single" : by_bw ? "bandwidth" : "memory");
        arr = cJSON_AddArrayToObject(root, "shards");
    } else {
        printf("model %s: %d layers; %d NUMA node(s); KV cache F16 for %d slot(s) x %d positions\n", model, L, n_nodes,
               n_slots, n_ctx);
        if (k > 1 && n_nodes > 1)
            printf("layers split in proportion to each node's %s\n", by_bw ? "memory bandwidth" : "memory");
        printf("%-6s %-5s %-6s %-8s %12s %12s %12s %12s  %s\n", "SHARD", "NODE", "CORES", "LAYERS", "WEIGHTS", "KV",
               "TOTAL", "NODE MEM", "FITS");
    }
    int all_fit = 1;
    for (int i = 0; i < k; i++) {
        const plan_node_t *nd = &nodes[i % n_nodes];
        uint64_t w = 0, kv = 0;
        for (int l = bounds[i]; l < bounds[i + 1]; l++) w += layer_w[l], kv += layer_kv[l];
        /* KV-sharing layers keep a copy of their source layers' caches when those run earlier */
        for (int l = 0; l < bounds[i]; l++) {
            int used = 0;
            for (int j = bounds[i]; j < bounds[i + 1]; j++) used |= kv_src[j] == l;
            if (used) kv += layer_kv[l];
        }
        if (bounds[i] == 0) w += embd;
        if (bounds[i + 1] == L) w += bounds[i] == 0 ? head - tied_bytes : head; /* one mapping when one shard */
        const uint64_t total = w + kv;
        const int fits = nd->memory == 0 || total <= nd->memory;
        all_fit &= fits;
        if (json) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "shard", i);
            cJSON_AddNumberToObject(e, "numa_node", nd->os_index);
            cJSON_AddNumberToObject(e, "cores", nd->cores);
            cJSON *ly = cJSON_AddArrayToObject(e, "layers");
            cJSON_AddItemToArray(ly, cJSON_CreateNumber(bounds[i]));
            cJSON_AddItemToArray(ly, cJSON_CreateNumber(bounds[i + 1]));
            cJSON_AddNumberToObject(e, "weight_bytes", (double)w);
            cJSON_AddNumberToObject(e, "kv_bytes", (double)kv);
            cJSON_AddNumberToObject(e, "total_bytes", (double)total);
            cJSON_AddNumberToObject(e, "node_memory_bytes", (double)nd->memory);
            cJSON_AddNumberToObject(e, "node_bandwidth_mbs", (double)nd->bandwidth);
            cJSON_AddBoolToObject(e, "fits", fits);
            cJSON_AddItemToArray(arr, e);
        } else {
            char a[32], b[32], c[32], d[32], ly[24];
            s_gib(a, sizeof a, w), s_gib(b, sizeof b, kv), s_gib(c, sizeof c, total), s_gib(d, sizeof d, nd->memory);
            snprintf(ly, sizeof ly, "%d-%d", bounds[i], bounds[i + 1]);
            printf("%-6d %-5d %-6d %-8s %12s %12s %12s %12s  %s\n", i, nd->os_index, nd->cores, ly, a, b, c, d,
                   fits ? "yes" : "NO");
        }
    }
    if (json) {
        cJSON_AddBoolToObject(root, "fits", all_fit);
        char *s = cJSON_PrintUnformatted(root);
        puts(s);
        cJSON_free(s);
    } else if (!all_fit) {
        printf("some shards do not fit: use more shards, a shorter --ctx or fewer --slots\n");
    }
    cJSON_Delete(root);
    g4_free(layer_w), g4_free(layer_kv), g4_free(kv_src);
    return 0;
}
