/* g4_kv — sequences and their KV caches: allocation per sequence (only the
 * layers the range runs or imports), fork, truncate, release, the row write
 * the forward pass uses, and the K/V rows one pipeline stage hands the next
 * for its KV-sharing layers (byte-exact copies of the cache rows).
 * Not here: attention over a cache (g4_attn.c), the run state (g4_forward.c). */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "g4_alloc.h"
#include "g4_dot.h"
#include "g4_dtype.h"
#include "g4_model_internal.h"

void g4_kv_seq_free(g4_ctx_t *c, g4_seq_t *s)
{
    if (s->k)
        for (uint32_t l = 0; l < c->m->hp.n_layer; l++) {
            g4_kv_mem_free(c, s->k[l]);
            g4_kv_mem_free(c, s->v[l]);
        }
    g4_free(s->k);
    g4_free(s->v);
    g4_free(s->lcell);
    g4_free(s->lcell0);
    memset(s, 0, sizeof *s);
}

static int s_seq_alloc(g4_ctx_t *c, g4_seq_t *s, g4_err_t *err)
{
    const g4_hparams_t *hp = &c->m->hp;
    s->k = g4_calloc(hp->n_layer, sizeof(void *));
    s->v = g4_calloc(hp->n_layer, sizeof(void *));
    if (!s->k || !s->v) goto nomem;
    for (int l = 0; l < c->m->end; l++) {
        if (l >= (int)hp->n_layer_kv) continue;
        if (l < c->m->begin && !g4_model_kv_imported(c->m, l)) continue;
        const size_t bytes = g4_kv_row_bytes(c, l) * (size_t)g4_kv_cells(c, l);
        s->k[l] = g4_kv_mem_alloc(c, bytes);
        s->v[l] = g4_kv_mem_alloc(c, bytes);
        if (!s->k[l] || !s->v[l]) goto nomem;
    }
    if (c->n_lcell) {
        s->lcell = g4_malloc((size_t)c->n_lcell * sizeof *s->lcell);
        s->lcell0 = g4_malloc((size_t)c->n_lcell * sizeof *s->lcell0);
        if (!s->lcell || !s->lcell0) goto nomem;
        for (int i = 0; i < c->n_lcell; i++) s->lcell[i] = -1;
    }
    s->start0 = s->vhead = -1;
    s->used = 1;
    return G4_OK;
nomem:
    g4_kv_seq_free(c, s);
    return g4_err_set(err, G4_ERR_NOMEM, "out of memory for a KV cache of %d positions", c->n_ctx);
}

int g4_seq_new(g4_ctx_t *c, g4_err_t *err)
{
    for (int i = 0; i < c->p.n_seq_max; i++) {
        if (c->seqs[i].used) continue;
        int rc = s_seq_alloc(c, &c->seqs[i], err);
        return rc ? rc : i;
    }
    return g4_err_set(err, G4_ERR_AGAIN, "all %d sequences are in use", c->p.n_seq_max);
}

g4_seq_t *g4_kv_seq(g4_ctx_t *c, int id)
{
    if (id < 0 || id >= c->p.n_seq_max || !c->seqs[id].used) return NULL;
    return &c->seqs[id];
}

int g4_seq_fork(g4_ctx_t *c, int src, g4_err_t *err)
{
    g4_seq_t *s = g4_kv_seq(c, src);
    if (!s) return g4_err_set(err, G4_ERR_RANGE, "no sequence %d", src);
    int id = g4_seq_new(c, err);
    if (id < 0) return id;
    g4_seq_t *d = &c->seqs[id];
    for (int l = c->m->begin; l < c->m->end; l++) {
        if (!s->k[l]) continue;
        const size_t bytes = g4_kv_row_bytes(c, l) * (size_t)g4_kv_cells(c, l);
        g4_kv_mem_copy(c, d->k[l], 1, s->k[l], 1, bytes);
        g4_kv_mem_copy(c, d->v[l], 1, s->v[l], 1, bytes);
    }
    d->n_past = s->n_past;
    if (c->n_lcell) {
        memcpy(d->lcell, s->lcell, (size_t)c->n_lcell * sizeof *d->lcell);
        memcpy(d->lcell0, s->lcell0, (size_t)c->n_lcell * sizeof *d->lcell0);
    }
    d->lhead = s->lhead, d->lhead0 = s->lhead0, d->start0 = s->start0, d->vhead = s->vhead;
    return id;
}

int g4_seq_truncate(g4_ctx_t *c, int id, int n_keep, g4_err_t *err)
{
    g4_seq_t *s = g4_kv_seq(c, id);
    if (!s) return g4_err_set(err, G4_ERR_RANGE, "no sequence %d", id);
    if (n_keep < 0 || n_keep > s->n_past)
        return g4_err_set(err, G4_ERR_RANGE, "cannot keep %d positions of a sequence at %d", n_keep, s->n_past);
    /* the sliding ring still holds the window before n_keep only if it was not overwritten */
    const int lost_before = s->n_past - c->n_ring; /* positions < this are gone from rings */
    if (n_keep < s->n_past && n_keep - (int)c->m->hp.n_swa < lost_before && lost_before > 0)
        return g4_err_set(err, G4_ERR_RANGE,
                          "cannot truncate to %d: the sliding-window cache no longer holds positions before %d", n_keep,
                          lost_before);
    s->n_past = n_keep;
    s->start0 = s->vhead = -1; /* (the prefix cache's layout is gone with the rows) */
    /* llama.cpp's seq_rm(n_keep, -1): the cells free, the search starts at the first */
    for (int i = 0; i < c->n_lcell; i++)
        if (s->lcell[i] >= n_keep) {
            if (i < s->lhead) s->lhead = i;
            for (int j = i; j < c->n_lcell; j++)
                if (s->lcell[j] >= n_keep) s->lcell[j] = -1;
            break;
        }
    return G4_OK;
}

void g4_seq_release(g4_ctx_t *c, int id)
{
    g4_seq_t *s = g4_kv_seq(c, id);
    if (s) g4_kv_seq_free(c, s);
}

int g4_seq_n_past(const g4_ctx_t *c, int id)
{
    if (id < 0 || id >= c->p.n_seq_max || !c->seqs[id].used) return -1;
    return c->seqs[id].n_past;
}

/* ---- llama.cpp's cache layout, for the attention's visiting order ------------------- */

static int s_pad256(int n) { return (n + 255) / 256 * 256; }

void g4_kv_view_step(const g4_ctx_t *c, g4_seq_t *s, const int32_t *pos, int n)
{
    const int size = c->n_lcell, n_swa = (int)c->m->hp.n_swa;
    const int kv_size = s_pad256(c->n_ctx);
    int pmax = -1;
    for (int i = 0; i < n; i++)
        if (pos[i] > pmax) pmax = pos[i];
    /* full layers: cell p holds position p; the view is the used cells rounded up */
    s->nkv_full = pmax + 1 > 256 ? s_pad256(pmax + 1) : 256;
    if (s->nkv_full > kv_size) s->nkv_full = kv_size;
    if (!size || n <= 0) return;
    /* find_slot: cells tested one at a time from the head; a cell is free when
     * empty or when its position has left the window of the sequence's last
     * position + 1 (the state before this ubatch) */
    int32_t *cell = s->lcell;
    int used = 0, seq_max = -1;
    for (int i = 0; i < size; i++)
        if (cell[i] >= 0) used++, seq_max = cell[i] > seq_max ? cell[i] : seq_max;
    int head = s->lhead, n_tested = 0, got = 0, rm_max = -1;
    if (head > used + 2 * n) head = 0;
    int32_t idx[n];
    memset(idx, 0, sizeof idx);
    while (got < n && n_tested < size) {
        if (head + 1 > size) {
            n_tested += size - head;
            head = 0;
            continue;
        }
        const int i = head++;
        n_tested++;
        if (cell[i] < 0 || seq_max + 1 - cell[i] >= n_swa) idx[got++] = i;
    }
    if (got < n) return; /* llama.cpp fails the ubatch here; g4's ring does not */
    /* apply_ubatch: the rows take their cells; what they overwrite, and every
     * older position, leaves the cache */
    for (int t = 0; t < n; t++) {
        if (cell[idx[t]] >= 0 && cell[idx[t]] > rm_max) rm_max = cell[idx[t]];
        cell[idx[t]] = pos[t];
    }
    if (rm_max >= 0)
        for (int i = 0; i < size; i++)
            if (cell[i] >= 0 && cell[i] <= rm_max) cell[i] = -1;
    s->lhead = idx[n - 1] + 1;
    int used_max_p1 = 0;
    for (int i = 0; i < size; i++)
        if (cell[i] >= 0) used_max_p1 = i + 1;
    s->nkv_swa = used_max_p1 > 256 ? s_pad256(used_max_p1) : 256;
    if (s->nkv_swa > size) s->nkv_swa = size;
}

int g4_kv_type_from_name(const char *name)
{
    static const char *names[] = {"f16", "f32", "q8_0"};
    for (int i = 0; name && i < 3; i++)
        if (!strcasecmp(name, names[i])) return i;
    return -1;
}

const char *g4_kv_type_name(int kv_type)
{
    return kv_type == G4_KV_F32 ? "f32" : kv_type == G4_KV_Q8_0 ? "q8_0" : "f16";
}

void g4_kv_rotate(float *x, int64_t n, int nb)
{
    const float scale = 1.0f / sqrtf((float)nb);
    for (int64_t b = 0; b + nb <= n; b += nb) {
        float *r = x + b;
        for (int j = 0; j < nb; j++) r[j] *= scale;
        for (int len = 1; len < nb; len <<= 1)
            for (int i = 0; i < nb; i += 2 * len)
                for (int j = 0; j < len; j++) {
                    const float u = r[i + j], v = r[i + len + j];
                    r[i + j] = u + v, r[i + len + j] = u - v;
                }
    }
}

void g4_kv_store(const g4_ctx_t *c, void *cache, int cells, const float *src, int64_t n, int pos)
{
    if (c->kv_type == G4_KV_Q8_0) { /* rows of n (a multiple of 32) as Q8_0 blocks, ggml's quantize_row_q8_0 */
        uint8_t *dst = (uint8_t *)cache + (size_t)(pos % cells) * (size_t)(n / 32 * 34);
        g4_type_ops(G4_DTYPE_Q8_0)->from_float(src, dst, n);
        return;
    }
    uint8_t *dst = (uint8_t *)cache + (size_t)(pos % cells) * (size_t)n * c->kv_elem;
    if (c->kv_elem == 2) {
        g4_fp16_t *h = (g4_fp16_t *)dst;
        for (int64_t i = 0; i < n; i++) h[i] = g4_fp32_to_fp16(src[i]);
    } else {
        memcpy(dst, src, (size_t)n * 4);
    }
}

/* ---- K/V rows between stages ---------------------------------------------------------- */

/* A section: int32 layer, int32 rows, int32 row_bytes, then per row the K row
 * and the V row exactly as the cache holds them (F16 or F32). */
size_t g4_ctx_kv_export_bytes(const g4_ctx_t *c, int n_rows)
{
    size_t n = 0;
    for (int l = c->m->begin; l < c->m->end; l++)
        if (g4_model_kv_exported(c->m, l)) n += 12 + (size_t)n_rows * 2 * g4_kv_row_bytes(c, l);
    return n;
}

size_t g4_ctx_kv_export(const g4_ctx_t *c, const g4_batch_t *b, void *out)
{
    uint8_t *o = out;
    for (int l = c->m->begin; l < c->m->end; l++) {
        if (!g4_model_kv_exported(c->m, l)) continue;
        const int32_t hdr[3] = {l, b->n, (int32_t)g4_kv_row_bytes(c, l)};
        memcpy(o, hdr, 12);
        o += 12;
        const size_t rb = g4_kv_row_bytes(c, l);
        const int cells = g4_kv_cells(c, l);
        for (int t = 0; t < b->n; t++) {
            const g4_seq_t *s = &c->seqs[b->seq[t]];
            g4_kv_mem_copy(c, o, 0, (const uint8_t *)s->k[l] + (size_t)(b->pos[t] % cells) * rb, 1, rb), o += rb;
            g4_kv_mem_copy(c, o, 0, (const uint8_t *)s->v[l] + (size_t)(b->pos[t] % cells) * rb, 1, rb), o += rb;
        }
    }
    return (size_t)(o - (uint8_t *)out);
}

int g4_ctx_kv_import(g4_ctx_t *c, const g4_batch_t *b, const void *in, size_t len, g4_err_t *err)
{
    const uint8_t *p = in, *end = p + len;
    int needed = 0, got = 0;
    for (int l = 0; l < c->m->begin; l++) needed += g4_model_kv_imported(c->m, l);
    while (p < end) {
        int32_t hdr[3];
        if ((size_t)(end - p) < 12) return g4_err_set(err, G4_ERR_PROTO, "truncated K/V section header");
        memcpy(hdr, p, 12);
        p += 12;
        const int l = hdr[0];
        if (l < 0 || l >= (int)c->m->hp.n_layer || hdr[1] != b->n)
            return g4_err_set(err, G4_ERR_PROTO, "K/V section for layer %d with %d rows (batch has %d)", l, hdr[1], b->n);
        const size_t rb = g4_kv_row_bytes(c, l);
        if ((size_t)hdr[2] != rb) return g4_err_set(err, G4_ERR_PROTO, "K/V rows of %d bytes for layer %d, want %zu", hdr[2], l, rb);
        if ((size_t)(end - p) < (size_t)b->n * 2 * rb) return g4_err_set(err, G4_ERR_PROTO, "truncated K/V section");
        if (!g4_model_kv_imported(c->m, l)) { /* another stage's: skip */
            p += (size_t)b->n * 2 * rb;
            continue;
        }
        const int cells = g4_kv_cells(c, l);
        for (int t = 0; t < b->n; t++) {
            g4_seq_t *s = &c->seqs[b->seq[t]];
            g4_kv_mem_copy(c, (uint8_t *)s->k[l] + (size_t)(b->pos[t] % cells) * rb, 1, p, 0, rb), p += rb;
            g4_kv_mem_copy(c, (uint8_t *)s->v[l] + (size_t)(b->pos[t] % cells) * rb, 1, p, 0, rb), p += rb;
        }
        got++;
    }
    if (got < needed) return g4_err_set(err, G4_ERR_PROTO, "%d K/V source layer(s) from earlier stages missing", needed - got);
    return G4_OK;
}
