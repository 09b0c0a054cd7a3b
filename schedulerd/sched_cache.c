/* sched_cache — the prefix cache, the scheduler's side: its index
 * (sched_prefix.c) over the chunks every stage of the chain keeps, turned
 * into orders that travel with each ForwardBatch (drop, restore, save; every
 * stage does the same with its own layers: shardd/shard_prefix.h).
 *
 *   a running request that has fed nothing looks its prompt up before each
 *   batch is formed (the longest exact prefix; it waits when another
 *   request is computing a longer one), and starts there: its first batch
 *   carries the restore, its first chunk ends where the cold run's ubatch
 *   does (sched_batch_need, vrows);
 *   each prompt chunk it feeds is kept (every layer's rows), least recently
 *   used leaves evicted to fit the budgets;
 *   a chunk becomes restorable when its batch comes back; one a stage could
 *   not keep, or a failed batch's, is forgotten; a restore a stage could not
 *   do sends the request back to position 0 without the cache.
 * The chain changing (a lost or swapped stage, a new epoch) empties it. */
#include <sodium.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_log.h"
#include "g4_media.h"
#include "sched_internal.h"

struct sched_cache_mem {
    G4__V1__CacheRestore *cr, **crp;
    G4__V1__CacheSave *cs, **csp;
    uint64_t *ids;
    int32_t *hist;
};

static int s_queue_drops(sched_t *s, int more)
{
    if (s->n_px_drop + more <= s->cap_px_drop) return 0;
    const int cap = (s->n_px_drop + more) * 2 + 64;
    uint64_t *nd = g4_realloc(s->px_drop, (size_t)cap * sizeof *nd);
    if (!nd) return -1;
    s->px_drop = nd, s->cap_px_drop = cap;
    return 0;
}

void sched_cache_chain(sched_t *s)
{
    static int sodium_ok;
    if (!sodium_ok) {
        sodium_ok = sodium_init() >= 0 ? 1 : -1;
        if (sodium_ok > 0) randombytes_buf(s->px_hkey, sizeof s->px_hkey);
    }
    spx_stage_t st[SPX_MAX_STAGES];
    int on = !s->p.no_prefix_cache && sodium_ok > 0 && s->n_chain > 0 && s->n_chain <= SPX_MAX_STAGES;
    for (int k = 0; on && k < s->n_chain; k++) {
        st[k] = s->d[s->chain[k]].cache;
        on = st[k].budget > 0;
    }
    const int n_old = s->px.n_live;
    int n = 0;
    if (!s_queue_drops(s, n_old))
        n = spx_reset(&s->px, st, on ? s->n_chain : 0, s->px_drop + s->n_px_drop, s->cap_px_drop - s->n_px_drop);
    else
        spx_reset(&s->px, st, on ? s->n_chain : 0, NULL, 0);
    s->n_px_drop += n;
    if (on != s->px_on && s->n_chain)
        g4_log_info("sched", "prefix cache %s", on ? "on" : s->p.no_prefix_cache ? "off (--no-prefix-cache)" : "off (a stage keeps none)");
    s->px_on = on;
    for (int i = 0; i < s->n_r; i++) s->r[i].px_node = -1, s->r[i].n_px_path = 0;
}

void sched_cache_req_restart(req_t *q, int off)
{
    q->px_phase = off ? PX_OFF : PX_LOOKUP;
    q->px_node = -1, q->px_node_id = 0;
    q->vrows = 0, q->cached = 0, q->n_px_path = 0;
}

void sched_cache_req_free(req_t *q)
{
    g4_free(q->pkeys), g4_free(q->px_path), g4_free(q->px_starts);
    q->pkeys = NULL, q->px_path = NULL, q->px_starts = NULL;
}

/* once per request: the rows' keys (token ids; a soft-token row its
 * embedding's keyed hash), the ubatches its prompt is fed in, room for a path */
static int s_keys(sched_t *s, req_t *q)
{
    if (q->pkeys) return 0;
    const size_t n = (size_t)(q->n_prompt ? q->n_prompt : 1);
    q->px_starts = g4_malloc(n * sizeof *q->px_starts);
    q->px_path = g4_malloc(n * sizeof *q->px_path);
    q->pkeys = g4_malloc(n * sizeof *q->pkeys);
    if (!q->px_starts || !q->px_path || !q->pkeys) {
        sched_cache_req_free(q);
        return -1;
    }
    q->n_px_starts = 0;
    for (int p = 0; p < q->n_prompt; q->n_px_starts++) {
        q->px_starts[q->n_px_starts] = p;
        const int c = g4_prefill_chunk(q->rflag, p, q->n_prompt, s->p.n_ubatch);
        p += c > 0 ? c : q->n_prompt;
    }
    for (int i = 0, e = 0; i < q->n_prompt; i++) {
        if (q->rflag && q->embd && (q->rflag[i] & G4_ROW_EMBD)) {
            uint8_t h[crypto_shorthash_BYTES];
            crypto_shorthash(h, (const unsigned char *)(q->embd + (size_t)e++ * q->n_embd),
                             (unsigned long long)q->n_embd * sizeof(float), s->px_hkey);
            memcpy(&q->pkeys[i], h, sizeof q->pkeys[i]);
            q->pkeys[i] |= 1ull << 63;
        } else {
            q->pkeys[i] = (uint32_t)q->tok[i];
        }
    }
    return 0;
}

void sched_cache_lookup(sched_t *s, req_t *q, sched_seq_t *sq)
{
    if (!s->px_on || q->px_phase != PX_LOOKUP || q->state != R_RUNNING || q->in_flight || q->finish || q->n_prompt < 2)
        return;
    if (s_keys(s, q)) return;
    /* chunks whose request feeds the chunk after them next (it shares this prompt's prefix, maybe further) */
    int grow[64], n_grow = 0;
    for (int i = 0; i < s->n_r && n_grow < 64; i++) {
        const req_t *o = &s->r[i];
        if (o != q && o->state == R_RUNNING && o->px_phase == PX_ACTIVE && !o->in_flight && o->n_fed < o->n_prompt &&
            o->px_node >= 0 && o->px_node < s->px.n_nodes && s->px.n[o->px_node].id == o->px_node_id)
            grow[n_grow++] = o->px_node;
    }
    const spx_match_t m =
        spx_match(&s->px, q->pkeys, q->n_prompt, q->px_starts, q->n_px_starts, q->px_path, grow, n_grow);
    q->n_fed = m.n_keep, q->vrows = m.n_keep - m.vstart, q->cached = m.n_keep;
    q->n_px_path = m.n_keep ? m.n_path : 0;
    q->px_node = -1, q->px_node_id = 0;
    if (m.n_keep) { /* the next chunk goes under the chunk that ends where it begins */
        const spx_node_t *x = &s->px.n[q->px_path[m.n_path - 1]];
        q->px_node = m.vstart == x->end ? q->px_path[m.n_path - 1] : x->parent;
        if (q->px_node >= 0) q->px_node_id = s->px.n[q->px_node].id;
    }
    sq->n_fed = q->n_fed, sq->vrows = q->vrows;
    if (m.wait) sq->in_flight = 1; /* another request is computing more of this prompt: start from that */
}

/* the prompt ids before n_keep the sampler's penalties look back on (its last_n window; soft tokens aside);
 * all of them for a last stage whose draft model follows the slot's ids */
static int s_history(const req_t *q, int n_keep, int32_t *out, int all)
{
    if (all && !q->rflag) {
        memcpy(out, q->tok, (size_t)n_keep * sizeof *out);
        return n_keep;
    }
    const int active = (q->sp.repeat_penalty != 0 && q->sp.repeat_penalty != 1.0f) || q->sp.presence_penalty != 0 ||
                       q->sp.frequency_penalty != 0;
    if (!active || q->sp.repeat_last_n <= 0) return 0;
    int cnt = 0;
    for (int p = 0; p < n_keep; p++) cnt += !q->rflag || !(q->rflag[p] & G4_ROW_EMBD);
    int skip = q->sp.repeat_last_n > 0 && cnt > q->sp.repeat_last_n ? cnt - q->sp.repeat_last_n : 0, k = 0;
    for (int p = 0; p < n_keep; p++) {
        if (q->rflag && (q->rflag[p] & G4_ROW_EMBD)) continue;
        if (skip > 0) {
            skip--;
            continue;
        }
        out[k++] = q->tok[p];
    }
    return k;
}

sched_cache_mem_t *sched_cache_orders(sched_t *s, batch_t *b, G4__V1__ForwardBatch *fb)
{
    for (int k = 0; k < b->n_req; k++) {
        b->px_save[k] = -1, b->px_save_id[k] = 0, b->px_restored[k] = 0;
        if (b->first_pos[k] < s->r[b->reqs[k]].n_prompt) s->px_computed += (uint64_t)b->rows_fed[k]; /* prompt rows */
    }
    if (!s->px_on && !s->n_px_drop) return NULL;
    sched_cache_mem_t *mem = g4_calloc(1, sizeof *mem);
    if (!mem) return NULL;
    size_t n_ids = 0, n_hist = 0;
    for (int k = 0; k < b->n_req; k++) {
        const req_t *q = &s->r[b->reqs[k]];
        if (q->px_phase == PX_LOOKUP && q->n_fed > 0) n_ids += (size_t)q->n_px_path, n_hist += (size_t)q->n_fed;
    }
    mem->cr = g4_calloc((size_t)b->n_req + 1, sizeof *mem->cr);
    mem->crp = g4_calloc((size_t)b->n_req + 1, sizeof *mem->crp);
    mem->cs = g4_calloc((size_t)b->n_req + 1, sizeof *mem->cs);
    mem->csp = g4_calloc((size_t)b->n_req + 1, sizeof *mem->csp);
    mem->ids = g4_malloc((n_ids + 1) * sizeof *mem->ids);
    mem->hist = g4_malloc((n_hist + 1) * sizeof *mem->hist);
    if (!mem->cr || !mem->crp || !mem->cs || !mem->csp || !mem->ids || !mem->hist) {
        sched_cache_orders_free(&mem);
        return NULL;
    }
    size_t at_id = 0, at_h = 0;
    int n_cr = 0, n_cs = 0;
    /* restores first: their chunks are pinned while this batch's saves make room */
    for (int k = 0; k < b->n_req && s->px_on; k++) {
        req_t *q = &s->r[b->reqs[k]];
        if (q->px_phase != PX_LOOKUP) continue;
        q->px_phase = PX_ACTIVE;
        if (!q->n_fed) {
            s->px_misses++;
            continue;
        }
        G4__V1__CacheRestore *cr = &mem->cr[n_cr];
        g4__v1__cache_restore__init(cr);
        cr->slot = (uint32_t)q->slot;
        cr->chunks = mem->ids + at_id, cr->n_chunks = (size_t)q->n_px_path;
        for (int i = 0; i < q->n_px_path; i++) mem->ids[at_id++] = s->px.n[q->px_path[i]].id, s->px.n[q->px_path[i]].pin++;
        cr->n_keep = (uint32_t)q->n_fed, cr->vstart = (uint32_t)(q->n_fed - q->vrows);
        cr->history = mem->hist + at_h;
        cr->n_history = (size_t)s_history(q, q->n_fed, cr->history,
                                          s->n_chain && !strcmp(s->d[s->chain[s->n_chain - 1]].draft, "model"));
        at_h += cr->n_history;
        mem->crp[n_cr++] = cr;
        b->px_restored[k] = 1;
        s->px_hits++, s->px_reused += (uint64_t)q->n_fed;
    }
    for (int k = 0; k < b->n_req && s->px_on; k++) {
        req_t *q = &s->r[b->reqs[k]];
        const int first = b->first_pos[k], e = first + b->rows_fed[k];
        if (first >= q->n_prompt) continue; /* (decode steps) */
        const int c = first - q->vrows;
        q->vrows = 0;
        if (q->px_phase != PX_ACTIVE || !q->pkeys) continue;
        int same = 0, n_drop = 0;
        if (s_queue_drops(s, s->px.n_live + 1)) continue;
        const int node = spx_add(&s->px, q->px_node, q->px_node_id, c, e, q->pkeys + c, &same,
                                 s->px_drop + s->n_px_drop, &n_drop, s->cap_px_drop - s->n_px_drop);
        s->n_px_drop += n_drop;
        if (node < 0) { /* not kept (budget, or the chunk before it is gone): nothing after it can be */
            q->px_phase = PX_OFF;
            continue;
        }
        if (same) { /* kept already: the request goes on under it */
            b->px_save[k] = -2 - node, b->px_save_id[k] = s->px.n[node].id;
            continue;
        }
        G4__V1__CacheSave *cs = &mem->cs[n_cs];
        g4__v1__cache_save__init(cs);
        cs->slot = (uint32_t)q->slot, cs->id = s->px.n[node].id;
        cs->begin = (uint32_t)c, cs->end = (uint32_t)e;
        mem->csp[n_cs++] = cs;
        b->px_save[k] = node, b->px_save_id[k] = cs->id;
    }
    for (int k = 0; k < b->n_req; k++) {
        const req_t *q = &s->r[b->reqs[k]];
        if (b->px_restored[k])
            for (int i = 0; i < q->n_px_path; i++) s->px.n[q->px_path[i]].pin--;
    }
    fb->cache_restore = mem->crp, fb->n_cache_restore = (size_t)n_cr;
    fb->cache_save = mem->csp, fb->n_cache_save = (size_t)n_cs;
    fb->cache_drop = s->px_drop, fb->n_cache_drop = (size_t)s->n_px_drop;
    return mem;
}

void sched_cache_orders_free(sched_cache_mem_t **pm)
{
    sched_cache_mem_t *m = pm ? *pm : NULL;
    if (!m) return;
    g4_free(m->cr), g4_free(m->crp), g4_free(m->cs), g4_free(m->csp), g4_free(m->ids), g4_free(m->hist);
    g4_free(m);
    *pm = NULL;
}

void sched_cache_result(sched_t *s, const batch_t *b, int i, int ok, const uint64_t *lost, size_t n_lost)
{
    if (!b->px_save) return;
    req_t *q = &s->r[b->reqs[i]];
    const int same = b->px_save[i] <= -2, node = same ? -2 - b->px_save[i] : b->px_save[i];
    if (node < 0) return;
    const uint64_t id = b->px_save_id[i];
    const int alive = node < s->px.n_nodes && s->px.n[node].id == id;
    int is_lost = 0;
    for (size_t k = 0; k < n_lost && !is_lost; k++) is_lost = lost[k] == id;
    if (!ok || (is_lost && !same)) {
        if (alive && !same && !s_queue_drops(s, s->px.n_live + 1)) {
            int n_drop = 0;
            spx_remove(&s->px, node, s->px_drop + s->n_px_drop, &n_drop, s->cap_px_drop - s->n_px_drop);
            s->n_px_drop += n_drop;
        }
        q->px_node = -1, q->px_node_id = 0;
        if (q->px_phase == PX_ACTIVE) q->px_phase = PX_OFF;
        return;
    }
    if (!alive) { /* (the index was emptied meanwhile) */
        q->px_node = -1, q->px_node_id = 0;
        return;
    }
    if (!same) spx_ready(&s->px, node);
    q->px_node = node, q->px_node_id = id;
}

void sched_cache_status(sched_t *s, G4__V1__PrefixCacheStatus *st)
{
    st->enabled = s->px_on;
    st->hits = s->px_hits, st->misses = s->px_misses;
    st->tokens_reused = s->px_reused, st->tokens_computed = s->px_computed;
    st->chunks = (uint64_t)s->px.n_live;
    st->bytes = spx_bytes_max(&s->px), st->budget = spx_budget_min(&s->px);
    st->evictions = s->px.evictions;
}
