/* sched_prefix — see sched_prefix.h: the prefix cache's index. Pure: no
 * sockets, no protobuf. */
#include "sched_prefix.h"

#include <string.h>

#include "g4_alloc.h"

/* a lookup waits for a chunk being computed when it would restore this many more positions */
#define SPX_WAIT_GAIN 16

void spx_init(spx_t *x) { memset(x, 0, sizeof *x); }

void spx_fini(spx_t *x)
{
    for (int i = 0; i < x->n_nodes; i++) g4_free(x->n[i].keys);
    g4_free(x->n);
    memset(x, 0, sizeof *x);
}

uint64_t spx_cost(const spx_t *x, int k, int begin, int end)
{
    return x->st[k].fixed + (uint64_t)(end - begin) * x->st[k].row;
}

static void s_free_node(spx_t *x, int i, uint64_t *drop, int *n_drop, int cap_drop)
{
    spx_node_t *nd = &x->n[i];
    for (int k = 0; k < x->n_st; k++) x->bytes[k] -= spx_cost(x, k, nd->begin, nd->end);
    if (nd->parent >= 0) x->n[nd->parent].n_child--;
    if (drop && *n_drop < cap_drop) drop[(*n_drop)++] = nd->id;
    g4_free(nd->keys);
    memset(nd, 0, sizeof *nd);
    x->n_live--;
}

void spx_remove(spx_t *x, int node, uint64_t *drop, int *n_drop, int cap_drop)
{
    if (node < 0 || node >= x->n_nodes || !x->n[node].id) return;
    for (int i = 0; i < x->n_nodes && x->n[node].n_child > 0; i++)
        if (x->n[i].id && x->n[i].parent == node) spx_remove(x, i, drop, n_drop, cap_drop);
    s_free_node(x, node, drop, n_drop, cap_drop);
}

int spx_reset(spx_t *x, const spx_stage_t *st, int n_st, uint64_t *drop, int cap_drop)
{
    int n_drop = 0;
    for (int i = 0; i < x->n_nodes; i++) {
        if (x->n[i].id && n_drop < cap_drop) drop[n_drop++] = x->n[i].id;
        g4_free(x->n[i].keys);
    }
    if (x->n) memset(x->n, 0, (size_t)x->cap * sizeof *x->n);
    x->n_nodes = x->n_live = 0;
    x->n_st = n_st < SPX_MAX_STAGES ? n_st : SPX_MAX_STAGES;
    for (int k = 0; k < x->n_st; k++) x->st[k] = st[k], x->bytes[k] = 0;
    return n_drop;
}

int spx_find(const spx_t *x, uint64_t id)
{
    for (int i = 0; id && i < x->n_nodes; i++)
        if (x->n[i].id == id) return i;
    return -1;
}

/* rows of keys[0..n) that equal node i's from its start */
static int s_common(const spx_node_t *nd, const uint64_t *keys, int n)
{
    const int len = nd->end - nd->begin < n ? nd->end - nd->begin : n;
    int m = 0;
    while (m < len && nd->keys[m] == keys[m]) m++;
    return m;
}

spx_match_t spx_match(spx_t *x, const uint64_t *keys, int n, const int *starts, int n_starts, int *path,
                      const int *grow, int n_grow)
{
    spx_match_t r = {0, 0, 0, 0};
    int best = -1, cur = -1, pos = 0, wait_L = 0;
    for (int si = 0; si < n_starts && starts[si] == pos && pos < n - 1; si++) {
        const int e_new = si + 1 < n_starts ? starts[si + 1] : n;
        int next = -1;
        for (int i = 0; i < x->n_nodes; i++) {
            const spx_node_t *nd = &x->n[i];
            if (!nd->id || nd->parent != cur || nd->begin != pos) continue;
            const int m = s_common(nd, keys + pos, n - 1 - pos), L = pos + m;
            if (nd->pending) {
                if (m && L > wait_L) wait_L = L;
                continue;
            }
            if (m == nd->end - nd->begin && nd->end == e_new) next = i;
            /* restore inside (or at the end of) this chunk: its rows were computed by the kernel the cold ubatch takes */
            const int same_kernel = spx_kernel_class(nd->end - pos) == spx_kernel_class(e_new - pos);
            if (L > pos && same_kernel && L > r.n_keep) r.n_keep = L, r.vstart = L == e_new ? L : pos, best = i;
            /* or at its start (a ubatch starts there) */
            if (pos > r.n_keep) r.n_keep = pos, r.vstart = pos, best = i;
        }
        if (next < 0) break;
        cur = next, pos = x->n[next].end;
    }
    r.wait = wait_L >= r.n_keep + SPX_WAIT_GAIN;
    for (int g = 0; g < n_grow && best >= 0 && !r.wait; g++) /* its next chunk is about to be computed */
        r.wait = grow[g] == best && x->n[best].end == r.n_keep && n - 1 >= r.n_keep + SPX_WAIT_GAIN;
    if (best < 0) {
        r.n_keep = r.vstart = 0;
        return r;
    }
    int d = 0;
    for (int i = best; i >= 0; i = x->n[i].parent) d++;
    r.n_path = d;
    for (int i = best; i >= 0; i = x->n[i].parent) path[--d] = i, x->n[i].used = ++x->tick;
    return r;
}

static int s_over(const spx_t *x, const uint64_t *need)
{
    for (int k = 0; k < x->n_st; k++)
        if (x->bytes[k] + need[k] > x->st[k].budget) return 1;
    return 0;
}

int spx_add(spx_t *x, int parent, uint64_t parent_id, int begin, int end, const uint64_t *keys, int *same, uint64_t *drop, int *n_drop, int cap_drop)
{
    *same = 0;
    if (!x->n_st || end <= begin) return -1;
    if (parent >= 0 && (parent >= x->n_nodes || x->n[parent].id != parent_id || x->n[parent].end != begin)) return -1;
    if (parent < 0 && begin != 0) return -1;
    for (int i = 0; i < x->n_nodes; i++) {
        spx_node_t *nd = &x->n[i];
        if (!nd->id || nd->parent != parent || nd->begin != begin || nd->end != end) continue;
        if (s_common(nd, keys, end - begin) != end - begin) continue;
        nd->used = ++x->tick;
        *same = 1;
        return i;
    }
    uint64_t need[SPX_MAX_STAGES];
    for (int k = 0; k < x->n_st; k++) {
        need[k] = spx_cost(x, k, begin, end);
        if (need[k] > x->st[k].budget) return -1;
    }
    /* least recently used leaves go until it fits (never a chunk in use) */
    if (parent >= 0) x->n[parent].pin++;
    while (s_over(x, need)) {
        int v = -1;
        for (int i = 0; i < x->n_nodes; i++) {
            const spx_node_t *nd = &x->n[i];
            if (nd->id && !nd->n_child && !nd->pending && !nd->pin && (v < 0 || nd->used < x->n[v].used)) v = i;
        }
        if (v < 0) break;
        s_free_node(x, v, drop, n_drop, cap_drop);
        x->evictions++;
    }
    if (parent >= 0) x->n[parent].pin--;
    if (s_over(x, need)) return -1;
    int i = 0;
    while (i < x->n_nodes && x->n[i].id) i++;
    if (i == x->n_nodes) {
        if (x->n_nodes == x->cap) {
            const int cap = x->cap * 2 + 32;
            spx_node_t *nn = g4_realloc(x->n, (size_t)cap * sizeof *nn);
            if (!nn) return -1;
            memset(nn + x->cap, 0, (size_t)(cap - x->cap) * sizeof *nn);
            x->n = nn, x->cap = cap;
        }
        x->n_nodes++;
    }
    spx_node_t *nd = &x->n[i];
    nd->keys = g4_malloc((size_t)(end - begin) * sizeof *nd->keys);
    if (!nd->keys) return -1;
    memcpy(nd->keys, keys, (size_t)(end - begin) * sizeof *nd->keys);
    nd->id = ++x->next_id;
    nd->parent = parent, nd->begin = begin, nd->end = end;
    nd->pending = 1, nd->n_child = 0, nd->pin = 0, nd->used = ++x->tick;
    if (parent >= 0) x->n[parent].n_child++;
    for (int k = 0; k < x->n_st; k++) x->bytes[k] += need[k];
    x->n_live++;
    return i;
}

void spx_ready(spx_t *x, int node)
{
    if (node >= 0 && node < x->n_nodes && x->n[node].id) x->n[node].pending = 0;
}

uint64_t spx_bytes_max(const spx_t *x)
{
    uint64_t m = 0;
    for (int k = 0; k < x->n_st; k++)
        if (x->bytes[k] > m) m = x->bytes[k];
    return m;
}

uint64_t spx_budget_min(const spx_t *x)
{
    uint64_t m = 0;
    for (int k = 0; k < x->n_st; k++)
        if (!k || x->st[k].budget < m) m = x->st[k].budget;
    return m;
}
