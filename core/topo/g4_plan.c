/* g4_plan — see g4_plan.h. */
#include "g4_plan.h"

#include <string.h>

int g4_plan_even(int n_layer, int n_shards, int *bounds, int max_bounds)
{
    int n = n_shards < 1 ? 1 : n_shards;
    if (n > n_layer) n = n_layer;
    if (n + 1 > max_bounds) n = max_bounds - 1;
    for (int i = 0; i < n; i++) bounds[i] = (int)((long)n_layer * i / n);
    bounds[n] = n_layer;
    return n;
}

static uint64_t s_share(const g4_topo_node_t *nd, int use_bw) { return use_bw ? nd->bandwidth_mbs : nd->memory_bytes; }

/* bounds moved toward each node's share of the total cost; 0 when the
 * result would not keep every stage (then bounds are left as they are) */
static int s_weighted(const g4_plan_model_t *m, const uint64_t *cost, const g4_topo_node_t *nodes, int n_nodes, int k,
                      int use_bw, int *bounds)
{
    const int L = m->n_layer;
    uint64_t share_total = 0, cost_total = 0;
    for (int i = 0; i < k; i++) share_total += s_share(&nodes[i % n_nodes], use_bw);
    for (int l = 0; l < L; l++) cost_total += cost[l];
    if (share_total == 0) return 0;
    int nb[G4_PLAN_MAX + 1], kk = 0, l = 0;
    nb[kk++] = 0;
    uint64_t acc = 0, target = 0;
    for (int i = 0; i < k - 1; i++) {
        target += (uint64_t)((double)cost_total * (double)s_share(&nodes[i % n_nodes], use_bw) / (double)share_total);
        while (l < L && acc + cost[l] / 2 < target) acc += cost[l], l++;
        int best = l;
        if (best <= nb[kk - 1]) best = nb[kk - 1] + 1;
        if (best > L - (k - 1 - i)) best = L - (k - 1 - i);
        if (best >= L) break;
        nb[kk++] = best;
    }
    nb[kk] = L;
    int ok = kk == k;
    for (int i = 1; ok && i < kk; i++) ok = nb[i] > nb[i - 1];
    if (ok) memcpy(bounds, nb, sizeof(int) * (size_t)(kk + 1));
    return ok;
}

int g4_plan_make(const g4_plan_model_t *m, const g4_topo_node_t *nodes, int n_nodes, int n_shards, g4_plan_t *plan)
{
    const int L = m->n_layer;
    memset(plan, 0, sizeof *plan);
    int bounds[G4_PLAN_MAX + 1];
    const int k = g4_plan_even(L, n_shards > 0 ? n_shards : n_nodes, bounds, G4_PLAN_MAX + 1);
    uint64_t cost[L > 0 ? L : 1];
    for (int l = 0; l < L; l++) cost[l] = m->layer_weight_bytes[l] + m->layer_kv_bytes[l];
    int by_bw = k > 1 && n_nodes > 1;
    for (int i = 0; i < k && by_bw; i++) by_bw = nodes[i % n_nodes].bandwidth_mbs > 0;
    const int weighted = k > 1 && n_nodes > 1;
    if (weighted && by_bw) {
        int bw_bounds[G4_PLAN_MAX + 1];
        memcpy(bw_bounds, bounds, sizeof(int) * (size_t)(k + 1));
        s_weighted(m, cost, nodes, n_nodes, k, 1, bw_bounds);
        /* the layers' weights and caches must fit (embedding and head: per stage below) */
        int fit = 1;
        for (int i = 0; i < k && fit; i++) {
            uint64_t w = 0;
            for (int l = bw_bounds[i]; l < bw_bounds[i + 1]; l++) w += cost[l];
            fit = nodes[i % n_nodes].memory_bytes == 0 || w <= nodes[i % n_nodes].memory_bytes;
        }
        if (fit) memcpy(bounds, bw_bounds, sizeof(int) * (size_t)(k + 1));
        else by_bw = 0;
    }
    if (weighted && !by_bw) s_weighted(m, cost, nodes, n_nodes, k, 0, bounds);
    plan->n_stages = k;
    plan->split = !weighted ? G4_PLAN_SPLIT_SINGLE : by_bw ? G4_PLAN_SPLIT_BANDWIDTH : G4_PLAN_SPLIT_MEMORY;
    plan->fits = 1;
    for (int i = 0; i < k; i++) {
        g4_plan_stage_t *s = &plan->stages[i];
        const g4_topo_node_t *nd = &nodes[i % n_nodes];
        s->layer_begin = bounds[i], s->layer_end = bounds[i + 1], s->node = i % n_nodes;
        for (int l = bounds[i]; l < bounds[i + 1]; l++) s->weight_bytes += m->layer_weight_bytes[l], s->kv_bytes += m->layer_kv_bytes[l];
        /* KV-sharing layers keep a copy of their source layers' caches when those run earlier */
        for (int l = 0; l < bounds[i]; l++) {
            int used = 0;
            for (int j = bounds[i]; j < bounds[i + 1]; j++) used |= m->kv_source[j] == l;
            if (used) s->kv_bytes += m->layer_kv_bytes[l];
        }
        if (bounds[i] == 0) s->weight_bytes += m->embd_bytes;
        if (bounds[i + 1] == L) s->weight_bytes += bounds[i] == 0 ? m->head_bytes - m->tied_bytes : m->head_bytes; /* one mapping when one stage */
        s->total_bytes = s->weight_bytes + s->kv_bytes + m->stage_bytes;
        s->fits = nd->memory_bytes == 0 || s->total_bytes <= nd->memory_bytes;
        plan->fits &= s->fits;
    }
    return k;
}

const char *g4_plan_split_name(g4_plan_split_t split)
{
    return split == G4_PLAN_SPLIT_BANDWIDTH ? "bandwidth" : split == G4_PLAN_SPLIT_MEMORY ? "memory" : "single";
}
