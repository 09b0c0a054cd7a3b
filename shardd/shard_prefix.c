/* shard_prefix — see shard_prefix.h. */
#include "shard_prefix.h"

#include <limits.h>
#include <string.h>

#include "g4_alloc.h"

typedef struct entry {
    uint64_t id;
    g4_kv_chunk_t *ch;
    size_t bytes;
} entry_t;

struct shard_store {
    entry_t *e;
    int n, cap;
    uint64_t bytes, budget;
};

shard_store_t *shard_store_new(uint64_t budget)
{
    shard_store_t *st = g4_calloc(1, sizeof *st);
    if (st) st->budget = budget;
    return st;
}

void shard_store_clear(shard_store_t *st)
{
    for (int i = 0; st && i < st->n; i++) g4_kv_chunk_free(&st->e[i].ch);
    if (st) st->n = 0, st->bytes = 0;
}

void shard_store_free(shard_store_t **pst)
{
    shard_store_t *st = pst ? *pst : NULL;
    if (!st) return;
    shard_store_clear(st);
    g4_free(st->e);
    g4_free(st);
    *pst = NULL;
}

static int s_find(const shard_store_t *st, uint64_t id)
{
    for (int i = 0; i < st->n; i++)
        if (st->e[i].id == id) return i;
    return -1;
}

void shard_store_drop(shard_store_t *st, const uint64_t *ids, size_t n)
{
    for (size_t k = 0; st && k < n; k++) {
        const int i = s_find(st, ids[k]);
        if (i < 0) continue;
        st->bytes -= st->e[i].bytes;
        g4_kv_chunk_free(&st->e[i].ch);
        st->e[i] = st->e[--st->n];
    }
}

int shard_store_get(shard_store_t *st, const uint64_t *ids, size_t n, g4_kv_chunk_t **out)
{
    int found = 0;
    for (size_t k = 0; k < n; k++) {
        const int i = st ? s_find(st, ids[k]) : -1;
        out[k] = i >= 0 ? st->e[i].ch : NULL;
        found += i >= 0;
    }
    return found;
}

int shard_store_save(shard_store_t *st, g4_ctx_t *ctx, int seq, uint64_t id, int begin, int end, g4_err_t *err)
{
    if (!st) return g4_err_set(err, G4_ERR_STATE, "no prefix cache");
    if (s_find(st, id) >= 0) return G4_OK; /* (kept already: the same order twice) */
    const size_t bytes = g4_ctx_chunk_bytes(ctx, begin, end);
    if (st->bytes + bytes > st->budget)
        return g4_err_set(err, G4_ERR_NOMEM, "chunk [%d, %d) needs %zu bytes; %llu of %llu kept", begin, end, bytes,
                          (unsigned long long)st->bytes, (unsigned long long)st->budget);
    if (st->n == st->cap) {
        const int cap = st->cap * 2 + 16;
        entry_t *ne = g4_realloc(st->e, (size_t)cap * sizeof *ne);
        if (!ne) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        st->e = ne, st->cap = cap;
    }
    g4_kv_chunk_t *ch = g4_ctx_chunk_save(ctx, seq, begin, end, err);
    if (!ch) return err->code;
    st->e[st->n++] = (entry_t){id, ch, bytes};
    st->bytes += bytes;
    return G4_OK;
}

uint64_t shard_store_bytes(const shard_store_t *st) { return st ? st->bytes : 0; }
uint64_t shard_store_budget(const shard_store_t *st) { return st ? st->budget : 0; }
int shard_store_count(const shard_store_t *st) { return st ? st->n : 0; }

uint64_t shard_store_default_budget(void)
{
    const unsigned long long avail = g4_mem_available();
    return avail == ULLONG_MAX ? 1ull << 30 : avail / 4;
}
