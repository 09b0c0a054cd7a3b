/* tok_vocab — see tok_vocab.h. */
#include "tok_vocab.h"

#include <stdlib.h>
#include <string.h>

#include "g4_alloc.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct s_merge {
    uint64_t key; /* left << 32 | right; 0 = empty */
    int32_t rank;
    int32_t result;
} s_merge_t;

struct tok_vocab {
    int n;
    char **text;      /* token texts (NUL-terminated copies) */
    uint32_t *len;
    int32_t *type;
    int32_t *tmap;    /* open addressing: text -> id, -1 empty */
    uint64_t tcap;
    s_merge_t *mmap;
    uint64_t mcap;
    int32_t byte_id[256];
    int32_t bos;
    int32_t *special; /* control/user-defined/unknown ids, longest first */
    int n_special;
};

static uint64_t s_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int32_t s_find(const tok_vocab_t *v, const char *s, size_t n)
{
    for (uint64_t k = s_hash(s, n) & (v->tcap - 1);; k = (k + 1) & (v->tcap - 1)) {
        int32_t id = v->tmap[k];
        if (id < 0) return -1;
        if (v->len[id] == n && !memcmp(v->text[id], s, n)) return id;
    }
}

static uint64_t s_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static const s_merge_t *s_merge(const tok_vocab_t *v, int32_t a, int32_t b)
{
    const uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    for (uint64_t k = s_mix(key) & (v->mcap - 1);; k = (k + 1) & (v->mcap - 1)) {
        if (!v->mmap[k].key) return NULL;
        if (v->mmap[k].key == key) return &v->mmap[k];
    }
}

static int s_cmp_len(const void *a, const void *b, void *ctx)
{
    const tok_vocab_t *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (int)v->len[y] - (int)v->len[x];
}

tok_vocab_t *tok_vocab_load(const g4_gguf_t *g, g4_err_t *err)
{
    tok_vocab_t *v = g4_calloc(1, sizeof *v);
    g4_gguf_value_t toks, types, merges;
    if (!v) goto nomem;
    if (g4_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks, err)) goto fail;
    if (toks.arr_type != G4_GGUF_STRING || toks.arr_n == 0 || toks.arr_n > (1u << 24)) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: tokenizer.ggml.tokens must be a non-empty array of strings", g4_gguf_path(g));
        goto fail;
    }
    v->n = (int)toks.arr_n;
    int has_types = g4_gguf_find_key(g, "tokenizer.ggml.token_type") >= 0;
    if (has_types) {
        if (g4_gguf_get_arr(g, "tokenizer.ggml.token_type", &types, err)) goto fail;
        if (types.arr_n != toks.arr_n) {
            g4_err_set(err, G4_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %d tokens", g4_gguf_path(g),
                       (unsigned long long)types.arr_n, v->n);
            goto fail;
        }
    }
    v->text = g4_calloc((size_t)v->n, sizeof *v->text);
    v->len = g4_calloc((size_t)v->n, sizeof *v->len);
    v->type = g4_calloc((size_t)v->n, sizeof *v->type);
    v->tcap = 16;
    while (v->tcap < (uint64_t)v->n * 2) v->tcap <<= 1;
    v->tmap = g4_malloc(v->tcap * sizeof *v->tmap);
    v->special = g4_malloc((size_t)v->n * sizeof *v->special);
    if (!v->text || !v->len || !v->type || !v->tmap || !v->special) goto nomem;
    memset(v->tmap, 0xff, v->tcap * sizeof *v->tmap);
    for (int i = 0; i < 256; i++) v->byte_id[i] = -1;
    for (int i = 0; i < v->n; i++) {
        g4_gguf_value_t e;
        g4_gguf_arr_get(g, &toks, (uint64_t)i, &e);
        v->text[i] = g4_strndup(e.str, (size_t)e.str_len);
        if (!v->text[i]) goto nomem;
        v->len[i] = (uint32_t)e.str_len;
        v->type[i] = TT_NORMAL;
        if (has_types) {
            g4_gguf_value_t t;
            int64_t x = TT_NORMAL;
            g4_gguf_arr_get(g, &types, (uint64_t)i, &t);
            g4_gguf_value_as_i64(&t, &x);
            v->type[i] = (int32_t)x;
        }
        uint64_t k = s_hash(v->text[i], v->len[i]) & (v->tcap - 1);
        while (v->tmap[k] >= 0) {
            if (v->len[v->tmap[k]] == v->len[i] && !memcmp(v->text[v->tmap[k]], v->text[i], v->len[i])) break;
            k = (k + 1) & (v->tcap - 1);
        }
        if (v->tmap[k] < 0) v->tmap[k] = i; /* first id wins on duplicate texts */
        if (v->type[i] == TT_BYTE && v->len[i] == 6 && !memcmp(v->text[i], "<0x", 3)) {
            unsigned b = (unsigned)strtoul(v->text[i] + 3, NULL, 16);
            if (b < 256) v->byte_id[b] = i;
        }
        if ((v->type[i] == TT_CONTROL || v->type[i] == TT_USER || v->type[i] == TT_UNKNOWN) && v->len[i] > 0)
            v->special[v->n_special++] = i;
    }
    qsort_r(v->special, (size_t)v->n_special, sizeof *v->special, s_cmp_len, v);
    /* merges */
    uint64_t n_merges = 0;
    if (g4_gguf_find_key(g, "tokenizer.ggml.merges") >= 0) {
        if (g4_gguf_get_arr(g, "tokenizer.ggml.merges", &merges, err)) goto fail;
        n_merges = merges.arr_type == G4_GGUF_STRING ? merges.arr_n : 0;
    }
    v->mcap = 16;
    while (v->mcap < n_merges * 2) v->mcap <<= 1;
    v->mmap = g4_calloc(v->mcap, sizeof *v->mmap);
    if (!v->mmap) goto nomem;
    for (uint64_t r = 0; r < n_merges; r++) {
        g4_gguf_value_t e;
        g4_gguf_arr_get(g, &merges, r, &e);
        const char *sp = e.str_len > 1 ? memchr(e.str + 1, ' ', (size_t)e.str_len - 1) : NULL;
        if (!sp) continue;
        const size_t la = (size_t)(sp - e.str), lb = (size_t)e.str_len - la - 1;
        int32_t a = s_find(v, e.str, la), b = s_find(v, sp + 1, lb);
        if (a < 0 || b < 0) continue;
        char buf[512];
        if (la + lb > sizeof buf) continue;
        memcpy(buf, e.str, la);
        memcpy(buf + la, sp + 1, lb);
        int32_t res = s_find(v, buf, la + lb);
        if (res < 0) continue;
        const uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
        uint64_t k = s_mix(key) & (v->mcap - 1);
        while (v->mmap[k].key && v->mmap[k].key != key) k = (k + 1) & (v->mcap - 1);
        if (!v->mmap[k].key) v->mmap[k] = (s_merge_t){key, (int32_t)r, res};
    }
    v->bos = 2;
    uint32_t bos;
    if (g4_gguf_find_key(g, "tokenizer.ggml.bos_token_id") >= 0 &&
        !g4_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos, NULL) && bos < (uint32_t)v->n)
        v->bos = (int32_t)bos;
    return v;
nomem:
    g4_err_set(err, G4_ERR_NOMEM, "out of memory loading the vocabulary");
fail:
    tok_vocab_destroy(&v);
    return NULL;
}

void tok_vocab_destroy(tok_vocab_t **pv)
{
    tok_vocab_t *v = pv ? *pv : NULL;
    if (!v) return;
    if (v->text)
        for (int i = 0; i < v->n; i++) g4_free(v->text[i]);
    g4_free(v->text);
    g4_free(v->len);
    g4_free(v->type);
    g4_free(v->tmap);
    g4_free(v->mmap);
    g4_free(v->special);
    g4_free(v);
    *pv = NULL;
}

int tok_vocab_size(const tok_vocab_t *v) { return v->n; }
int32_t tok_vocab_bos(const tok_vocab_t *v) { return v->bos; }

/* ---- output buffer ---- */
typedef struct s_ids {
    int32_t *p;
    int n, cap, failed;
} s_ids_t;

static void s_push(s_ids_t *o, int32_t id)
{
    if (o->failed) return;
    if (o->n == o->cap) {
        int cap = o->cap ? o->cap * 2 : 64;
        int32_t *p = g4_realloc(o->p, (size_t)cap * sizeof *p);
        if (!p) {
            o->failed = 1;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    o->p[o->n++] = id;
}

/* ---- BPE over one run (already space-escaped, no '\n' mixing) ---- */
typedef struct s_sym {
    int32_t start, len, id, prev, next;
} s_sym_t;

typedef struct s_pair {
    int32_t rank, left, right_len_check, left_len;
} s_pair_t;

static int s_pair_less(const s_pair_t *a, const s_pair_t *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static void s_heap_push(s_pair_t *h, int *n, s_pair_t x)
{
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!s_pair_less(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static s_pair_t s_heap_pop(s_pair_t *h, int *n)
{
    s_pair_t top = h[0], x = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && s_pair_less(&h[c + 1], &h[c])) c++;
        if (!s_pair_less(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

static int s_utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

static int s_bpe(const tok_vocab_t *v, const char *s, int n, s_ids_t *out)
{
    s_sym_t *sym = g4_malloc((size_t)n * sizeof *sym);
    s_pair_t *heap = g4_malloc((size_t)(n + 1) * 2 * sizeof *heap);
    if (!sym || !heap) {
        g4_free(sym);
        g4_free(heap);
        return G4_ERR_NOMEM;
    }
    int ns = 0;
    for (int i = 0; i < n;) {
        int l = s_utf8_len((unsigned char)s[i]);
        if (i + l > n) l = n - i;
        sym[ns] = (s_sym_t){i, l, s_find(v, s + i, (size_t)l), ns - 1, ns + 1};
        ns++;
        i += l;
    }
    if (ns) sym[ns - 1].next = -1;
    int nh = 0;
    for (int i = 0; i + 1 < ns; i++) {
        const s_merge_t *m = sym[i].id >= 0 && sym[i + 1].id >= 0 ? s_merge(v, sym[i].id, sym[i + 1].id) : NULL;
        if (m) s_heap_push(heap, &nh, (s_pair_t){m->rank, i, sym[i + 1].len, sym[i].len});
    }
    while (nh) {
        s_pair_t p = s_heap_pop(heap, &nh);
        s_sym_t *L = &sym[p.left];
        if (L->len != p.left_len || L->next < 0) continue; /* stale */
        s_sym_t *R = &sym[L->next];
        if (R->len != p.right_len_check || L->len == 0 || R->len == 0) continue;
        const s_merge_t *m = s_merge(v, L->id, R->id);
        if (!m || m->rank != p.rank) continue;
        L->len += R->len;
        L->id = m->result;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) sym[R->next].prev = p.left;
        if (L->prev >= 0) {
            s_sym_t *P = &sym[L->prev];
            const s_merge_t *pm = s_merge(v, P->id, L->id);
            if (pm) s_heap_push(heap, &nh, (s_pair_t){pm->rank, L->prev, L->len, P->len});
        }
        if (L->next >= 0) {
            s_sym_t *N = &sym[L->next];
            const s_merge_t *nm = s_merge(v, L->id, N->id);
            if (nm) s_heap_push(heap, &nh, (s_pair_t){nm->rank, p.left, N->len, L->len});
        }
    }
    for (int i = 0; i >= 0 && i < ns; i = sym[i].next) {
        if (sym[i].id >= 0) {
            s_push(out, sym[i].id);
        } else {
            for (int k = 0; k < sym[i].len; k++) {
                int32_t b = v->byte_id[(unsigned char)s[sym[i].start + k]];
                if (b >= 0) s_push(out, b);
            }
        }
    }
    g4_free(sym);
    g4_free(heap);
    return out->failed ? G4_ERR_NOMEM : G4_OK;
}

/* text fragment without specials: escape spaces, split newline runs, BPE */
static int s_fragment(const tok_vocab_t *v, const char *t, size_t n, s_ids_t *out)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        const int nl = t[i] == '\n';
        while (j < n && (t[j] == '\n') == nl) j++;
        if (nl) {
            int32_t id = s_find(v, t + i, j - i);
            if (id >= 0) {
                s_push(out, id);
                i = j;
                continue;
            }
        }
        size_t spaces = 0;
        for (size_t k = i; k < j; k++) spaces += t[k] == ' ';
        char *esc = g4_malloc(j - i + spaces * 2 + 1);
        if (!esc) return G4_ERR_NOMEM;
        size_t e = 0;
        for (size_t k = i; k < j; k++) {
            if (t[k] == ' ') {
                memcpy(esc + e, "\xE2\x96\x81", 3);
                e += 3;
            } else {
                esc[e++] = t[k];
            }
        }
        int rc = s_bpe(v, esc, (int)e, out);
        g4_free(esc);
        if (rc) return rc;
        i = j;
    }
    return G4_OK;
}

static int s_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        int l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!l || i + (size_t)l > n) return 0;
        for (int k = 1; k < l; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += (size_t)l;
    }
    return 1;
}

int tok_vocab_tokenize(const tok_vocab_t *v, const char *text, size_t len, int add_bos, int parse_special,
                       int32_t **ids, int *n_ids, g4_err_t *err)
{
    if (!s_utf8_valid((const unsigned char *)text, len))
        return g4_err_set(err, G4_ERR_FORMAT, "input text is not valid UTF-8");
    s_ids_t out = {0};
    if (add_bos) s_push(&out, v->bos);
    size_t start = 0, i = 0;
    while (i < len) {
        int32_t hit = -1;
        if (text[i] == '<' || (unsigned char)text[i] >= 0x80 || text[i] == '[') {
            for (int k = 0; k < v->n_special; k++) {
                const int32_t id = v->special[k];
                if (v->type[id] == TT_CONTROL && !parse_special) continue;
                if (v->type[id] == TT_UNKNOWN && !parse_special) continue;
                if (v->len[id] <= len - i && !memcmp(text + i, v->text[id], v->len[id])) {
                    hit = id;
                    break;
                }
            }
        }
        if (hit < 0) {
            i++;
            continue;
        }
        if (i > start && s_fragment(v, text + start, i - start, &out)) goto nomem;
        s_push(&out, hit);
        i += v->len[hit];
        start = i;
    }
    if (len > start && s_fragment(v, text + start, len - start, &out)) goto nomem;
    if (out.failed) goto nomem;
    *ids = out.p;
    *n_ids = out.n;
    return G4_OK;
nomem:
    g4_free(out.p);
    return g4_err_set(err, G4_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
}

int tok_vocab_piece(const tok_vocab_t *v, int32_t id, char *buf, size_t size, int special)
{
    if (id < 0 || id >= v->n) return -1;
    const int t = v->type[id];
    size_t n = 0;
    if (t == TT_CONTROL || t == TT_UNKNOWN || t == TT_UNUSED) {
        if (!special) return 0;
    }
    if (t == TT_BYTE && v->len[id] == 6) {
        if (size) buf[0] = (char)strtoul(v->text[id] + 3, NULL, 16);
        return size ? 1 : 0;
    }
    const char *s = v->text[id];
    for (uint32_t i = 0; i < v->len[id];) {
        if (t == TT_NORMAL && i + 3 <= v->len[id] && !memcmp(s + i, "\xE2\x96\x81", 3)) {
            if (n < size) buf[n] = ' ';
            n++;
            i += 3;
        } else {
            if (n < size) buf[n] = s[i];
            n++;
            i++;
        }
    }
    return (int)(n < size ? n : size);
}

char *tok_vocab_detokenize(const tok_vocab_t *v, const int32_t *ids, int n, int special, size_t *len)
{
    size_t cap = 64, used = 0;
    char *out = g4_malloc(cap);
    if (!out) return NULL;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->n) continue;
        size_t need = v->len[ids[i]] + 1;
        if (used + need + 1 > cap) {
            while (used + need + 1 > cap) cap *= 2;
            char *p = g4_realloc(out, cap);
            if (!p) {
                g4_free(out);
                return NULL;
            }
            out = p;
        }
        int l = tok_vocab_piece(v, ids[i], out + used, cap - used, special);
        if (l > 0) used += (size_t)l;
    }
    out[used] = '\0';
    if (len) *len = used;
    return out;
}
