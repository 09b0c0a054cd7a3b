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

/* ---- devices ------------------------------------------------------------------ */

/* bytes stage [b, e) holds on a device: layers and caches (a KV-sharing
 * layer's imported source cache too), the LM head on the last, the
 * embedding on the first when it is the CPU (a GPU leaves it in host memory) */
static uint64_t s_dev_bytes(const g4_plan_model_t *m, int b, int e, int gpu, uint64_t *w_out, uint64_t *kv_out)
{
    uint64_t w = 0, kv = 0;
    for (int l = b; l < e; l++) w += m->layer_weight_bytes[l], kv += m->layer_kv_bytes[l];
    for (int l = 0; l < b; l++) {
        int used = 0;
        for (int j = b; j < e; j++) used |= m->kv_source[j] == l;
        if (used) kv += m->layer_kv_bytes[l];
    }
    if (b == 0 && !gpu) w += m->embd_bytes;
    if (e == m->n_layer) w += b == 0 && !gpu ? m->head_bytes - m->tied_bytes : m->head_bytes;
    if (w_out) *w_out = w;
    if (kv_out) *kv_out = kv;
    return w + kv + m->stage_bytes;
}

static int s_dev_fits(const g4_plan_model_t *m, const g4_plan_device_t *d, int b, int e)
{
    return d->memory_bytes == 0 || s_dev_bytes(m, b, e, d->gpu, NULL, NULL) <= d->memory_bytes;
}

int g4_plan_devices(const g4_plan_model_t *m, const g4_plan_device_t *devs, int n, g4_plan_t *plan)
{
    const int L = m->n_layer;
    memset(plan, 0, sizeof *plan);
    if (n <= 0 || n > G4_PLAN_MAX) return 0;
    int idx[G4_PLAN_MAX], k = 0, n_gpu = 0;
    uint64_t gpu_mem = 0;
    int gpu_unknown = 0;
    for (int i = 0; i < n; i++)
        if (devs[i].gpu) n_gpu++, gpu_mem += devs[i].memory_bytes, gpu_unknown |= devs[i].memory_bytes == 0;
    int bounds[G4_PLAN_MAX + 1];
    /* the GPUs alone, layers by memory (even when a memory is unknown) */
    if (n_gpu > 0 && n_gpu <= L) {
        for (int i = 0; i < n; i++)
            if (devs[i].gpu) idx[k++] = i;
        bounds[0] = 0;
        uint64_t total = 0, acc = 0;
        for (int l = 0; l < L; l++) total += m->layer_weight_bytes[l] + m->layer_kv_bytes[l];
        for (int s = 0, l = 0; s < k; s++) {
            acc += gpu_unknown ? 0 : devs[idx[s]].memory_bytes;
            const double want = gpu_unknown ? (double)total * (s + 1) / k : (double)total * (double)acc / (double)gpu_mem;
            uint64_t sum = 0;
            for (int j = 0; j < l; j++) sum += m->layer_weight_bytes[j] + m->layer_kv_bytes[j];
            while (l < L - (k - s - 1) && (s == k - 1 || (double)(sum + (m->layer_weight_bytes[l] + m->layer_kv_bytes[l]) / 2) <= want))
                sum += m->layer_weight_bytes[l] + m->layer_kv_bytes[l], l++;
            if (l == bounds[s]) l++; /* a layer at least */
            bounds[s + 1] = l;
        }
        bounds[k] = L;
        int fit = 1;
        for (int s = 0; s < k && fit; s++) fit = s_dev_fits(m, &devs[idx[s]], bounds[s], bounds[s + 1]);
        if (!fit && n_gpu == n) { /* nothing else to run on: the greedy split says what is short */
            int l = 0;
            for (int s = 0; s < k; s++) {
                int e = l + 1;
                while (e < L - (k - s - 1) && (s == k - 1 || s_dev_fits(m, &devs[idx[s]], l, e + 1))) e++;
                bounds[s + 1] = s == k - 1 ? L : e;
                l = bounds[s + 1];
            }
        } else if (!fit) {
            k = 0; /* GPUs and CPUs below */
        }
    }
    if (k == 0) {
        /* every device: the GPUs at either end of the chain fill up from the
         * ends inwards, the middle GPUs take what fits, the CPUs the rest */
        if (n > L) return 0;
        for (int i = 0; i < n; i++) idx[i] = i;
        k = n;
        int cnt[G4_PLAN_MAX] = {0}, first_cpu = -1, last_cpu = -1;
        for (int i = 0; i < n; i++)
            if (!devs[i].gpu) {
                if (first_cpu < 0) first_cpu = i;
                last_cpu = i;
            }
        int lo = 0, hi = L; /* layers not yet given */
        for (int i = n - 1; i > last_cpu; i--) { /* from the end */
            int b = hi - 1;
            while (b - 1 >= lo + (i - 0) && s_dev_fits(m, &devs[i], b - 1, hi)) b--;
            cnt[i] = hi - b, hi = b;
        }
        for (int i = 0; i < first_cpu; i++) { /* from the start */
            int e = lo + 1;
            while (e + 1 <= hi - (n - 1 - i) && s_dev_fits(m, &devs[i], lo, e + 1)) e++;
            cnt[i] = e - lo, lo = e;
        }
        int rest = hi - lo, n_cpu = 0;
        for (int i = first_cpu; i <= last_cpu; i++) {
            if (!devs[i].gpu) {
                n_cpu++;
                continue;
            }
            /* a middle GPU: as many layers of the average size as fit */
            uint64_t avg = 0;
            for (int l = lo; l < hi; l++) avg += m->layer_weight_bytes[l] + m->layer_kv_bytes[l];
            avg = rest > 0 ? avg / (uint64_t)(hi - lo) : 1;
            const uint64_t cap = devs[i].memory_bytes > m->stage_bytes ? devs[i].memory_bytes - m->stage_bytes : 0;
            int c = devs[i].memory_bytes ? (int)(cap / (avg ? avg : 1)) : rest / (last_cpu - first_cpu + 1);
            if (c < 1) c = 1;
            cnt[i] = c, rest -= c;
        }
        if (rest < n_cpu) return 0;
        for (int i = first_cpu, j = 0; i <= last_cpu; i++)
            if (!devs[i].gpu) cnt[i] = rest / n_cpu + (j++ < rest % n_cpu);
        bounds[0] = 0;
        for (int i = 0; i < n; i++) bounds[i + 1] = bounds[i] + cnt[i];
        bounds[n] = L;
    }
    plan->n_stages = k;
    plan->split = k > 1 ? G4_PLAN_SPLIT_MEMORY : G4_PLAN_SPLIT_SINGLE;
    plan->fits = 1;
    for (int s = 0; s < k; s++) {
        g4_plan_stage_t *st = &plan->stages[s];
        const g4_plan_device_t *d = &devs[idx[s]];
        st->layer_begin = bounds[s], st->layer_end = bounds[s + 1], st->node = idx[s];
        st->total_bytes = s_dev_bytes(m, bounds[s], bounds[s + 1], d->gpu, &st->weight_bytes, &st->kv_bytes);
        st->fits = d->memory_bytes == 0 || st->total_bytes <= d->memory_bytes;
        plan->fits &= st->fits;
    }
    return k;
}
