/* g4_prefix — see g4_prefix.h: chunks of a sequence's caches, saved and
 * restored byte for byte. */
#include "g4_prefix.h"

#include <stdint.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_model_internal.h"

struct g4_kv_chunk {
    int begin, end;  /* positions */
    int lhead;       /* llama.cpp's layout before the chunk */
    int32_t *lcell;  /* [n_lcell] */
    int n_layer;
    size_t *off;     /* [n_layer] K then V rows of layer l in data; SIZE_MAX: none */
    uint8_t *data;
    size_t bytes;    /* accounted (g4_ctx_chunk_bytes) */
};

/* layer l has a cache in this range (as s_seq_alloc decides) */
static int s_has_cache(const g4_ctx_t *c, int l)
{
    const g4_model_t *m = c->m;
    if (l >= m->end || l >= (int)m->hp.n_layer_kv) return 0;
    return l >= m->begin || g4_model_kv_imported(m, l);
}

void g4_ctx_chunk_cost(const g4_ctx_t *c, g4_chunk_cost_t *k)
{
    memset(k, 0, sizeof *k);
    for (int l = 0; l < (int)c->m->hp.n_layer; l++)
        if (s_has_cache(c, l)) k->row += 2 * g4_kv_row_bytes(c, l);
    k->fixed = sizeof(g4_kv_chunk_t) + (size_t)c->m->hp.n_layer * sizeof(size_t) + (size_t)c->n_lcell * sizeof(int32_t);
}

size_t g4_ctx_chunk_bytes(const g4_ctx_t *c, int begin, int end)
{
    g4_chunk_cost_t k;
    g4_ctx_chunk_cost(c, &k);
    return k.fixed + (size_t)(end - begin) * k.row;
}

void g4_kv_chunk_free(g4_kv_chunk_t **pch)
{
    g4_kv_chunk_t *ch = pch ? *pch : NULL;
    if (!ch) return;
    g4_free(ch->lcell);
    g4_free(ch->off);
    g4_free(ch->data);
    g4_free(ch);
    *pch = NULL;
}

void g4_kv_chunk_info(const g4_kv_chunk_t *ch, int *begin, int *end, size_t *bytes)
{
    if (begin) *begin = ch->begin;
    if (end) *end = ch->end;
    if (bytes) *bytes = ch->bytes;
}

/* rows [p0, p1) of a cache of `cells` rows (position p at row p % cells) to / from dst */
static void s_rows_out(const g4_ctx_t *c, uint8_t *dst, const uint8_t *cache, size_t rb, int cells, int p0, int p1)
{
    for (int p = p0; p < p1;) {
        const int r = p % cells, run = cells - r < p1 - p ? cells - r : p1 - p;
        g4_kv_mem_copy(c, dst, 0, cache + (size_t)r * rb, 1, (size_t)run * rb);
        dst += (size_t)run * rb, p += run;
    }
}

static void s_rows_in(const g4_ctx_t *c, uint8_t *cache, const uint8_t *src, size_t rb, int cells, int p0, int p1)
{
    for (int p = p0; p < p1;) {
        const int r = p % cells, run = cells - r < p1 - p ? cells - r : p1 - p;
        g4_kv_mem_copy(c, cache + (size_t)r * rb, 1, src, 0, (size_t)run * rb);
        src += (size_t)run * rb, p += run;
    }
}

g4_kv_chunk_t *g4_ctx_chunk_save(g4_ctx_t *c, int id, int begin, int end, g4_err_t *err)
{
    g4_seq_t *s = g4_kv_seq(c, id);
    const g4_hparams_t *hp = &c->m->hp;
    if (!s) {
        g4_err_set(err, G4_ERR_RANGE, "no sequence %d", id);
        return NULL;
    }
    /* right after the ubatch of these rows: the layout before it is known, the ring holds them */
    if (begin < 0 || end <= begin || s->start0 != begin || s->n_past != end || end - begin > c->n_ring) {
        g4_err_set(err, G4_ERR_STATE, "cannot keep positions [%d, %d): the last ubatch was %d..%d", begin, end, s->start0,
                   s->n_past);
        return NULL;
    }
    g4_kv_chunk_t *ch = g4_calloc(1, sizeof *ch);
    if (!ch) goto nomem;
    ch->begin = begin, ch->end = end;
    ch->n_layer = (int)hp->n_layer;
    ch->bytes = g4_ctx_chunk_bytes(c, begin, end);
    ch->off = g4_malloc((size_t)ch->n_layer * sizeof *ch->off);
    if (!ch->off) goto nomem;
    size_t total = 0;
    for (int l = 0; l < ch->n_layer; l++) {
        ch->off[l] = s->k[l] ? total : SIZE_MAX;
        if (s->k[l]) total += 2 * (size_t)(end - begin) * g4_kv_row_bytes(c, l);
    }
    ch->data = g4_malloc(total ? total : 1);
    if (!ch->data) goto nomem;
    for (int l = 0; l < ch->n_layer; l++) {
        if (ch->off[l] == SIZE_MAX) continue;
        const size_t rb = g4_kv_row_bytes(c, l);
        uint8_t *dst = ch->data + ch->off[l];
        s_rows_out(c, dst, s->k[l], rb, g4_kv_cells(c, l), begin, end);
        s_rows_out(c, dst + (size_t)(end - begin) * rb, s->v[l], rb, g4_kv_cells(c, l), begin, end);
    }
    if (c->n_lcell) {
        ch->lcell = g4_malloc((size_t)c->n_lcell * sizeof *ch->lcell);
        if (!ch->lcell) goto nomem;
        memcpy(ch->lcell, s->lcell0, (size_t)c->n_lcell * sizeof *ch->lcell);
        ch->lhead = s->lhead0;
    }
    return ch;
nomem:
    g4_kv_chunk_free(&ch);
    g4_err_set(err, G4_ERR_NOMEM, "out of memory keeping positions [%d, %d)", begin, end);
    return NULL;
}

int g4_ctx_chunk_restore(g4_ctx_t *c, int id, g4_kv_chunk_t *const *chunks, int n, int n_keep, int vstart,
                         g4_err_t *err)
{
    g4_seq_t *s = g4_kv_seq(c, id);
    const g4_hparams_t *hp = &c->m->hp;
    if (!s) return g4_err_set(err, G4_ERR_RANGE, "no sequence %d", id);
    if (s->n_past) return g4_err_set(err, G4_ERR_STATE, "sequence %d is not empty (%d positions)", id, s->n_past);
    if (n <= 0 || !chunks) return g4_err_set(err, G4_ERR_RANGE, "no chunks to restore from");
    for (int i = 0; i < n; i++)
        if (!chunks[i] || chunks[i]->begin != (i ? chunks[i - 1]->end : 0) || chunks[i]->n_layer != (int)hp->n_layer)
            return g4_err_set(err, G4_ERR_RANGE, "chunk %d does not continue the ones before it", i);
    const g4_kv_chunk_t *x = chunks[n - 1];
    if (n_keep < x->begin || n_keep > x->end || n_keep > c->n_ctx)
        return g4_err_set(err, G4_ERR_RANGE, "cannot keep %d positions from chunks up to [%d, %d)", n_keep, x->begin,
                          x->end);
    if (vstart != n_keep && vstart != x->begin)
        return g4_err_set(err, G4_ERR_RANGE, "a ubatch at %d cannot continue %d (chunk from %d)", vstart, n_keep,
                          x->begin);
    for (int l = 0; l < (int)hp->n_layer; l++)
        for (int i = 0; s->k[l] && i < n; i++)
            if (chunks[i]->off[l] == SIZE_MAX)
                return g4_err_set(err, G4_ERR_STATE, "chunk [%d, %d) lacks layer %d", chunks[i]->begin, chunks[i]->end, l);
    for (int l = 0; l < (int)hp->n_layer; l++) {
        if (!s->k[l]) continue;
        const size_t rb = g4_kv_row_bytes(c, l);
        const int cells = g4_kv_cells(c, l);
        /* full layers: every position; sliding ones: the window before the
         * ubatch n_keep is in and that ubatch's rows (a chunk kept after it
         * holds them all) */
        const int w0 = (vstart < n_keep ? vstart : n_keep) - (int)hp->n_swa + 1;
        const int from = hp->is_swa[l] && w0 > 0 ? w0 : 0;
        for (int i = 0; i < n; i++) {
            const g4_kv_chunk_t *ch = chunks[i];
            const int p0 = ch->begin > from ? ch->begin : from, p1 = ch->end < n_keep ? ch->end : n_keep;
            if (p1 <= p0) continue;
            const int rows = ch->end - ch->begin;
            const uint8_t *src = ch->data + ch->off[l] + (size_t)(p0 - ch->begin) * rb;
            s_rows_in(c, s->k[l], src, rb, cells, p0, p1);
            s_rows_in(c, s->v[l], src + (size_t)rows * rb, rb, cells, p0, p1);
        }
    }
    s->n_past = n_keep;
    s->start0 = s->vhead = -1;
    if (c->n_lcell && x->lcell) {
        memcpy(s->lcell, x->lcell, (size_t)c->n_lcell * sizeof *s->lcell);
        s->lhead = x->lhead;
        if (vstart == n_keep && n_keep > x->begin) { /* the chunk was a ubatch of its own: lay it out */
            const int nr = n_keep - x->begin;
            int32_t *pos = g4_malloc((size_t)nr * sizeof *pos);
            if (!pos) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
            for (int i = 0; i < nr; i++) pos[i] = x->begin + i;
            g4_kv_view_step(c, s, pos, nr);
            g4_free(pos);
        }
    }
    if (vstart < n_keep) s->vhead = vstart;
    return G4_OK;
}
