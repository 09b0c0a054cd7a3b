/* g4_gguf — checked GGUF reader. See g4_gguf.h for the contract.
 *
 * Reading order: header -> metadata (validated and indexed in one pass) ->
 * tensor infos -> alignment and data section -> per-tensor bounds, alignment
 * and overlap. Every read goes through s_cur_* which checks the bytes that
 * remain; every product goes through s_mul_ok. Checklist taken from public
 * GGUF parser reports (llama.cpp/ggml CVE-2024-21825..21836 and later):
 * oversized string/array lengths, n_dims > 4, ne products overflowing,
 * offsets past EOF or wrapping, unknown types, bad alignment, duplicates. */

#include "g4_gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "g4_alloc.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */

typedef struct s_kv {
    char *key;          /* NUL-terminated copy */
    g4_gguf_type_t type;
    uint64_t off;       /* offset of the value payload in the file */
    uint32_t table;     /* element table for arrays of strings/arrays (1-based) */
    uint64_t end;       /* one past the value's last byte */
} s_kv_t;

typedef struct s_elem {
    uint64_t off;       /* offset of the element's payload */
    uint32_t table;     /* its own element table if it is such an array */
} s_elem_t;

typedef struct s_ti {
    char *name;         /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[G4_MAX_DIMS];
    uint32_t type;
    uint64_t offset;    /* relative to the data section */
    uint64_t n_bytes;
} s_ti_t;

struct g4_gguf {
    char *path;
    const uint8_t *base;
    size_t size;
    int mapped;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;

    int64_t n_kv;
    s_kv_t *kvs;
    int64_t n_tensors;
    s_ti_t *tis;

    /* element-offset tables for arrays of strings / arrays */
    s_elem_t **tables;
    uint32_t n_tables, cap_tables;

    int64_t *kv_hash;   /* open addressing, -1 = empty */
    uint64_t kv_hash_cap;
    int64_t *ti_hash;
    uint64_t ti_hash_cap;
};

/* ====================================================================== */
/* cursor                                                                 */
/* ====================================================================== */

typedef struct s_cur {
    g4_gguf_t *g;
    uint64_t off;
    g4_err_t *err;
} s_cur_t;

static int s_fail(s_cur_t *c, uint64_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int s_fail(s_cur_t *c, uint64_t off, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return g4_err_set(c->err, G4_ERR_FORMAT, "%s: offset %llu: %s", c->g->path, (unsigned long long)off, what);
}

static inline uint64_t s_left(const s_cur_t *c) { return c->g->size - c->off; }

static int s_need(s_cur_t *c, uint64_t n, const char *what)
{
    if (s_left(c) < n)
        return s_fail(c, c->off, "truncated: %s needs %llu bytes, %llu left", what, (unsigned long long)n,
                      (unsigned long long)s_left(c));
    return G4_OK;
}

static uint64_t s_rd(const g4_gguf_t *g, uint64_t off, int n)
{
    uint64_t v = 0;
    memcpy(&v, g->base + off, (size_t)n); /* little-endian host */
    return v;
}

static int s_u32(s_cur_t *c, uint32_t *v, const char *what)
{
    int rc = s_need(c, 4, what);
    if (rc) return rc;
    *v = (uint32_t)s_rd(c->g, c->off, 4);
    c->off += 4;
    return G4_OK;
}

static int s_u64(s_cur_t *c, uint64_t *v, const char *what)
{
    int rc = s_need(c, 8, what);
    if (rc) return rc;
    *v = s_rd(c->g, c->off, 8);
    c->off += 8;
    return G4_OK;
}

static inline int s_mul_ok(uint64_t a, uint64_t b, uint64_t *r)
{
    return !__builtin_mul_overflow(a, b, r);
}

/* string = u64 length + bytes; returns the offset of the bytes */
static int s_str(s_cur_t *c, uint64_t *len, uint64_t *pos, uint64_t max_len, const char *what)
{
    uint64_t at = c->off;
    int rc = s_u64(c, len, what);
    if (rc) return rc;
    if (*len > s_left(c))
        return s_fail(c, at, "%s length %llu exceeds the %llu bytes left in the file", what,
                      (unsigned long long)*len, (unsigned long long)s_left(c));
    if (*len > max_len)
        return s_fail(c, at, "%s length %llu exceeds the limit %llu", what, (unsigned long long)*len,
                      (unsigned long long)max_len);
    *pos = c->off;
    c->off += *len;
    return G4_OK;
}

/* ====================================================================== */
/* values                                                                 */
/* ====================================================================== */

static const uint8_t s_type_size[G4_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const s_type_names[G4_GGUF_TYPE_COUNT] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};

const char *g4_gguf_type_name(g4_gguf_type_t t)
{
    return (unsigned)t < G4_GGUF_TYPE_COUNT ? s_type_names[t] : "?";
}

static int s_add_table(s_cur_t *c, s_elem_t *tab, uint32_t *idx)
{
    g4_gguf_t *g = c->g;
    if (g->n_tables == g->cap_tables) {
        uint32_t cap = g->cap_tables ? g->cap_tables * 2 : 16;
        s_elem_t **t = g4_realloc(g->tables, (size_t)cap * sizeof *t);
        if (!t) return g4_err_set(c->err, G4_ERR_NOMEM, "%s: out of memory indexing arrays", g->path);
        g->tables = t;
        g->cap_tables = cap;
    }
    g->tables[g->n_tables++] = tab;
    *idx = g->n_tables; /* 1-based; 0 = no table */
    return G4_OK;
}

/* Validates a value of type t at c->off and advances past it. */
static int s_skip_value(s_cur_t *c, uint32_t t, int depth)
{
    uint64_t at = c->off;
    if (t >= G4_GGUF_TYPE_COUNT) return s_fail(c, at, "unknown value type %u", t);
    if (t == G4_GGUF_STRING) {
        uint64_t len, pos;
        return s_str(c, &len, &pos, UINT64_MAX, "string");
    }
    if (t != G4_GGUF_ARRAY) {
        int rc = s_need(c, s_type_size[t], s_type_names[t]);
        if (rc) return rc;
        if (t == G4_GGUF_BOOL && c->g->base[c->off] > 1)
            return s_fail(c, at, "bool value %u is not 0 or 1", c->g->base[c->off]);
        c->off += s_type_size[t];
        return G4_OK;
    }
    if (depth >= G4_GGUF_MAX_DEPTH) return s_fail(c, at, "arrays nested deeper than %d", G4_GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t n;
    int rc = s_u32(c, &et, "array element type");
    if (rc) return rc;
    if (et >= G4_GGUF_TYPE_COUNT) return s_fail(c, at, "unknown array element type %u", et);
    rc = s_u64(c, &n, "array length");
    if (rc) return rc;
    if (et != G4_GGUF_STRING && et != G4_GGUF_ARRAY) {
        uint64_t bytes;
        if (!s_mul_ok(n, s_type_size[et], &bytes) || bytes > s_left(c))
            return s_fail(c, at, "array of %llu %s needs more than the %llu bytes left", (unsigned long long)n,
                          s_type_names[et], (unsigned long long)s_left(c));
        if (et == G4_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (c->g->base[c->off + i] > 1)
                    return s_fail(c, c->off + i, "bool array element %llu is not 0 or 1", (unsigned long long)i);
        c->off += bytes;
        return G4_OK;
    }
    /* variable-size elements: each takes at least 8 (string) or 12 (array) bytes */
    const uint64_t min_elem = et == G4_GGUF_STRING ? 8 : 12;
    if (n > s_left(c) / min_elem)
        return s_fail(c, at, "array of %llu %s cannot fit in the %llu bytes left", (unsigned long long)n,
                      s_type_names[et], (unsigned long long)s_left(c));
    return G4_OK; /* elements are walked by s_index_array */
}

/* Like s_skip_value, but for arrays of strings/arrays also records element
 * offsets so that element i can be found in O(1). Returns the table index. */
static int s_parse_value(s_cur_t *c, uint32_t t, int depth, uint32_t *table)
{
    *table = 0;
    uint64_t at = c->off;
    int rc = s_skip_value(c, t, depth);
    if (rc || t != G4_GGUF_ARRAY) return rc;
    uint32_t et = (uint32_t)s_rd(c->g, at, 4);
    if (et != G4_GGUF_STRING && et != G4_GGUF_ARRAY) return G4_OK;
    uint64_t n = s_rd(c->g, at + 4, 8);
    s_elem_t *tab = g4_malloc((size_t)(n ? n : 1) * sizeof *tab);
    if (!tab) return g4_err_set(c->err, G4_ERR_NOMEM, "%s: out of memory indexing an array of %llu", c->g->path,
                                (unsigned long long)n);
    rc = s_add_table(c, tab, table);
    if (rc) {
        g4_free(tab);
        return rc;
    }
    for (uint64_t i = 0; i < n; i++) {
        tab[i].off = c->off;
        rc = s_parse_value(c, et, depth + 1, &tab[i].table);
        if (rc) return rc;
    }
    return G4_OK;
}

static void s_decode(const g4_gguf_t *g, g4_gguf_type_t t, uint64_t off, uint32_t table, g4_gguf_value_t *v)
{
    memset(v, 0, sizeof *v);
    v->type = t;
    switch (t) {
    case G4_GGUF_U8: case G4_GGUF_BOOL: v->v.u = g->base[off]; break;
    case G4_GGUF_U16: v->v.u = s_rd(g, off, 2); break;
    case G4_GGUF_U32: v->v.u = s_rd(g, off, 4); break;
    case G4_GGUF_U64: v->v.u = s_rd(g, off, 8); break;
    case G4_GGUF_I8: v->v.i = (int8_t)g->base[off]; break;
    case G4_GGUF_I16: v->v.i = (int16_t)s_rd(g, off, 2); break;
    case G4_GGUF_I32: v->v.i = (int32_t)s_rd(g, off, 4); break;
    case G4_GGUF_I64: v->v.i = (int64_t)s_rd(g, off, 8); break;
    case G4_GGUF_F32: {
        float f;
        memcpy(&f, g->base + off, 4);
        v->v.f = f;
        break;
    }
    case G4_GGUF_F64: memcpy(&v->v.f, g->base + off, 8); break;
    case G4_GGUF_STRING:
        v->str_len = s_rd(g, off, 8);
        v->str = (const char *)g->base + off + 8;
        break;
    case G4_GGUF_ARRAY:
        v->arr_type = (g4_gguf_type_t)s_rd(g, off, 4);
        v->arr_n = s_rd(g, off + 4, 8);
        v->arr_data = g->base + off + 12;
        v->arr_index = table;
        break;
    default: break;
    }
}

void g4_gguf_arr_get(const g4_gguf_t *g, const g4_gguf_value_t *arr, uint64_t i, g4_gguf_value_t *out)
{
    memset(out, 0, sizeof *out);
    if (arr->type != G4_GGUF_ARRAY || i >= arr->arr_n) return;
    const uint64_t start = (uint64_t)((const uint8_t *)arr->arr_data - g->base);
    if (arr->arr_type == G4_GGUF_STRING || arr->arr_type == G4_GGUF_ARRAY) {
        if (!G4_ALWAYS(arr->arr_index > 0 && arr->arr_index <= g->n_tables)) return;
        const s_elem_t *e = &g->tables[arr->arr_index - 1][i];
        s_decode(g, arr->arr_type, e->off, e->table, out);
    } else {
        s_decode(g, arr->arr_type, start + i * s_type_size[arr->arr_type], 0, out);
    }
}

/* ====================================================================== */
/* hashing                                                                */
/* ====================================================================== */

static uint64_t s_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int64_t *s_hash_new(int64_t n, uint64_t *cap)
{
    uint64_t c = 16;
    while (c < (uint64_t)n * 2) c <<= 1;
    int64_t *h = g4_malloc((size_t)c * sizeof *h);
    if (h) memset(h, 0xff, (size_t)c * sizeof *h);
    *cap = c;
    return h;
}

/* Inserts entry i named `name`; returns the index of an existing entry with
 * the same name, or -1. */
static int64_t s_hash_put(int64_t *h, uint64_t cap, const char *name, int64_t i, const char *(*get)(const g4_gguf_t *, int64_t),
                          const g4_gguf_t *g)
{
    for (uint64_t k = s_hash(name) & (cap - 1);; k = (k + 1) & (cap - 1)) {
        if (h[k] < 0) {
            h[k] = i;
            return -1;
        }
        if (strcmp(get(g, h[k]), name) == 0) return h[k];
    }
}

static int64_t s_hash_get(const int64_t *h, uint64_t cap, const char *name, const char *(*get)(const g4_gguf_t *, int64_t),
                          const g4_gguf_t *g)
{
    if (!h) return -1;
    for (uint64_t k = s_hash(name) & (cap - 1);; k = (k + 1) & (cap - 1)) {
        if (h[k] < 0) return -1;
        if (strcmp(get(g, h[k]), name) == 0) return h[k];
    }
}

static const char *s_kv_name(const g4_gguf_t *g, int64_t i) { return g->kvs[i].key; }
static const char *s_ti_name(const g4_gguf_t *g, int64_t i) { return g->tis[i].name; }

/* ====================================================================== */
/* parse                                                                  */
/* ====================================================================== */

static int s_copy_name(s_cur_t *c, uint64_t pos, uint64_t len, char **out, const char *what)
{
    if (len == 0) return s_fail(c, pos - 8, "empty %s", what);
    if (memchr(c->g->base + pos, 0, (size_t)len)) return s_fail(c, pos, "%s contains a NUL byte", what);
    *out = g4_strndup((const char *)c->g->base + pos, (size_t)len);
    if (!*out) return g4_err_set(c->err, G4_ERR_NOMEM, "%s: out of memory", c->g->path);
    return G4_OK;
}

static int s_cmp_off(const void *a, const void *b, void *ctx)
{
    const s_ti_t *t = ctx;
    uint64_t x = t[*(const int64_t *)a].offset, y = t[*(const int64_t *)b].offset;
    return x < y ? -1 : x > y;
}

static int s_parse(g4_gguf_t *g, g4_err_t *err)
{
    s_cur_t c = {g, 0, err};
    int rc;
    uint32_t magic, version;
    if (g->size < 4) return s_fail(&c, 0, "file too small to be GGUF (%zu bytes)", g->size);
    if ((rc = s_u32(&c, &magic, "magic"))) return rc;
    if (magic != GGUF_MAGIC) return s_fail(&c, 0, "bad magic 0x%08x, not a GGUF file", magic);
    if ((rc = s_u32(&c, &version, "version"))) return rc;
    if (version == 1) return s_fail(&c, 4, "GGUF version 1 is not supported (only 2 and 3)");
    if ((version & 0xFFFF) == 0 && version != 0)
        return s_fail(&c, 4, "version 0x%08x: big-endian GGUF is not supported", version);
    if (version != 2 && version != 3) return s_fail(&c, 4, "unsupported GGUF version %u (only 2 and 3)", version);
    g->version = version;

    uint64_t n_tensors, n_kv;
    if ((rc = s_u64(&c, &n_tensors, "tensor count"))) return rc;
    if ((rc = s_u64(&c, &n_kv, "metadata count"))) return rc;
    if (n_kv > s_left(&c) / 13)
        return s_fail(&c, 16, "metadata count %llu cannot fit in the %llu bytes left", (unsigned long long)n_kv,
                      (unsigned long long)s_left(&c));
    if (n_tensors > s_left(&c) / 29)
        return s_fail(&c, 8, "tensor count %llu cannot fit in the %llu bytes left", (unsigned long long)n_tensors,
                      (unsigned long long)s_left(&c));

    /* ---- metadata ---- */
    g->kvs = g4_calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kvs);
    g->kv_hash = s_hash_new((int64_t)n_kv, &g->kv_hash_cap);
    if (!g->kvs || !g->kv_hash) return g4_err_set(err, G4_ERR_NOMEM, "%s: out of memory", g->path);
    g->alignment = 32;
    for (uint64_t i = 0; i < n_kv; i++) {
        uint64_t at = c.off, len, pos;
        if ((rc = s_str(&c, &len, &pos, G4_GGUF_MAX_KEY, "key"))) return rc;
        if ((rc = s_copy_name(&c, pos, len, &g->kvs[i].key, "key"))) return rc;
        g->n_kv = (int64_t)i + 1;
        uint32_t t;
        if ((rc = s_u32(&c, &t, "value type"))) return rc;
        if (t >= G4_GGUF_TYPE_COUNT) return s_fail(&c, c.off - 4, "key '%s': unknown value type %u", g->kvs[i].key, t);
        g->kvs[i].type = (g4_gguf_type_t)t;
        g->kvs[i].off = c.off;
        if ((rc = s_parse_value(&c, t, 0, &g->kvs[i].table))) return rc;
        g->kvs[i].end = c.off;
        int64_t dup = s_hash_put(g->kv_hash, g->kv_hash_cap, g->kvs[i].key, (int64_t)i, s_kv_name, g);
        if (dup >= 0) return s_fail(&c, at, "duplicate key '%s'", g->kvs[i].key);
        if (strcmp(g->kvs[i].key, "general.alignment") == 0) {
            if (t != G4_GGUF_U32)
                return s_fail(&c, g->kvs[i].off, "general.alignment has type %s, expected UINT32", s_type_names[t]);
            uint32_t a = (uint32_t)s_rd(g, g->kvs[i].off, 4);
            if (a == 0 || (a & (a - 1)) || a < G4_GGUF_MIN_ALIGNMENT || a > G4_GGUF_MAX_ALIGNMENT)
                return s_fail(&c, g->kvs[i].off, "general.alignment %u is not a power of two in [%u, %u]", a,
                              G4_GGUF_MIN_ALIGNMENT, G4_GGUF_MAX_ALIGNMENT);
            g->alignment = a;
        }
    }

    /* ---- tensor infos ---- */
    g->tis = g4_calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->tis);
    g->ti_hash = s_hash_new((int64_t)n_tensors, &g->ti_hash_cap);
    if (!g->tis || !g->ti_hash) return g4_err_set(err, G4_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n_tensors; i++) {
        s_ti_t *ti = &g->tis[i];
        uint64_t at = c.off, len, pos;
        if ((rc = s_str(&c, &len, &pos, G4_GGUF_MAX_NAME, "tensor name"))) return rc;
        if ((rc = s_copy_name(&c, pos, len, &ti->name, "tensor name"))) return rc;
        g->n_tensors = (int64_t)i + 1;
        uint64_t dims_at = c.off;
        if ((rc = s_u32(&c, &ti->n_dims, "tensor n_dims"))) return rc;
        if (ti->n_dims < 1 || ti->n_dims > G4_MAX_DIMS)
            return s_fail(&c, dims_at, "tensor '%s': n_dims %u outside [1, %d]", ti->name, ti->n_dims, G4_MAX_DIMS);
        uint64_t nelem = 1;
        for (int d = 0; d < G4_MAX_DIMS; d++) ti->ne[d] = 1;
        for (uint32_t d = 0; d < ti->n_dims; d++) {
            uint64_t ne, ne_at = c.off;
            if ((rc = s_u64(&c, &ne, "tensor dimension"))) return rc;
            if (ne > (uint64_t)INT64_MAX)
                return s_fail(&c, ne_at, "tensor '%s': dimension %u is negative or too large (%llu)", ti->name, d,
                              (unsigned long long)ne);
            if (!s_mul_ok(nelem, ne, &nelem) || nelem > (uint64_t)INT64_MAX)
                return s_fail(&c, ne_at, "tensor '%s': element count overflows", ti->name);
            ti->ne[d] = (int64_t)ne;
        }
        uint64_t type_at = c.off;
        if ((rc = s_u32(&c, &ti->type, "tensor type"))) return rc;
        const g4_dtype_traits_t *tr = g4_dtype_traits(ti->type);
        if (!tr) return s_fail(&c, type_at, "tensor '%s': unknown tensor type %u", ti->name, ti->type);
        if (ti->ne[0] % tr->block_size)
            return s_fail(&c, dims_at, "tensor '%s': row of %lld elements is not a whole number of %s blocks of %u",
                          ti->name, (long long)ti->ne[0], tr->name, tr->block_size);
        uint64_t row = (uint64_t)ti->ne[0] / tr->block_size * tr->type_size, rows = 1;
        if (!s_mul_ok((uint64_t)ti->ne[1], (uint64_t)ti->ne[2], &rows) || !s_mul_ok(rows, (uint64_t)ti->ne[3], &rows) ||
            !s_mul_ok(row, rows, &ti->n_bytes))
            return s_fail(&c, dims_at, "tensor '%s': byte size overflows", ti->name);
        uint64_t off_at = c.off;
        if ((rc = s_u64(&c, &ti->offset, "tensor offset"))) return rc;
        if (ti->offset % g->alignment)
            return s_fail(&c, off_at, "tensor '%s': data offset %llu is not a multiple of the alignment %u", ti->name,
                          (unsigned long long)ti->offset, g->alignment);
        int64_t dup = s_hash_put(g->ti_hash, g->ti_hash_cap, ti->name, (int64_t)i, s_ti_name, g);
        if (dup >= 0) return s_fail(&c, at, "duplicate tensor name '%s'", ti->name);
    }

    /* ---- data section ---- */
    uint64_t pad = (g->alignment - c.off % g->alignment) % g->alignment;
    g->data_offset = c.off + pad;
    if (n_tensors == 0) return G4_OK;
    if (g->data_offset > g->size)
        return s_fail(&c, c.off, "truncated: tensor data section starts at %llu, past the end of the file (%zu)",
                      (unsigned long long)g->data_offset, g->size);
    const uint64_t data_size = g->size - g->data_offset;
    int64_t *order = g4_malloc((size_t)n_tensors * sizeof *order);
    if (!order) return g4_err_set(err, G4_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n_tensors; i++) {
        const s_ti_t *ti = &g->tis[i];
        order[i] = (int64_t)i;
        if (ti->offset > data_size || ti->n_bytes > data_size - ti->offset) {
            g4_free(order);
            return s_fail(&c, g->data_offset, "tensor '%s': data [%llu, +%llu) ends past the end of the file (%llu data bytes)",
                          ti->name, (unsigned long long)ti->offset, (unsigned long long)ti->n_bytes,
                          (unsigned long long)data_size);
        }
    }
    qsort_r(order, (size_t)n_tensors, sizeof *order, s_cmp_off, g->tis);
    for (uint64_t k = 1; k < n_tensors; k++) {
        const s_ti_t *a = &g->tis[order[k - 1]], *b = &g->tis[order[k]];
        if (a->offset + a->n_bytes > b->offset) {
            rc = s_fail(&c, g->data_offset + b->offset, "tensor '%s' overlaps tensor '%s'", b->name, a->name);
            g4_free(order);
            return rc;
        }
    }
    g4_free(order);
    return G4_OK;
}

/* ====================================================================== */
/* lifecycle                                                              */
/* ====================================================================== */

static g4_gguf_t *s_new(const char *name, g4_err_t *err)
{
    g4_gguf_t *g = g4_calloc(1, sizeof *g);
    if (!g) {
        g4_err_set(err, G4_ERR_NOMEM, "%s: out of memory", name);
        return NULL;
    }
    g->path = g4_strdup(name);
    if (!g->path) {
        g4_free(g);
        g4_err_set(err, G4_ERR_NOMEM, "%s: out of memory", name);
        return NULL;
    }
    return g;
}

g4_gguf_t *g4_gguf_open_mem(const void *data, size_t size, const char *name, g4_err_t *err)
{
    g4_gguf_t *g = s_new(name ? name : "<memory>", err);
    if (!g) return NULL;
    g->base = data;
    g->size = size;
    if (s_parse(g, err)) g4_gguf_destroy(&g);
    return g;
}

g4_gguf_t *g4_gguf_open(const char *path, g4_err_t *err)
{
    g4_gguf_t *g = s_new(path, err);
    if (!g) return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        g4_err_set(err, G4_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        g4_err_set(err, G4_ERR_IO, "%s: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        g4_err_set(err, G4_ERR_IO, "%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    g->size = (size_t)st.st_size;
    if (g->size == 0) {
        close(fd);
        g4_err_set(err, G4_ERR_FORMAT, "%s: offset 0: empty file, not a GGUF file", path);
        goto fail;
    }
    void *p = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        g4_err_set(err, G4_ERR_IO, "%s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    g->base = p;
    g->mapped = 1;
    if (s_parse(g, err)) goto fail;
    return g;
fail:
    g4_gguf_destroy(&g);
    return NULL;
}

void g4_gguf_destroy(g4_gguf_t **pg)
{
    g4_gguf_t *g = pg ? *pg : NULL;
    if (!g) return;
    if (g->mapped) munmap((void *)g->base, g->size);
    for (int64_t i = 0; i < g->n_kv; i++) g4_free(g->kvs[i].key);
    for (int64_t i = 0; i < g->n_tensors; i++) g4_free(g->tis[i].name);
    for (uint32_t i = 0; i < g->n_tables; i++) g4_free(g->tables[i]);
    g4_free(g->tables);
    g4_free(g->kvs);
    g4_free(g->tis);
    g4_free(g->kv_hash);
    g4_free(g->ti_hash);
    g4_free(g->path);
    g4_free(g);
    *pg = NULL;
}

/* ====================================================================== */
/* accessors                                                              */
/* ====================================================================== */

const char *g4_gguf_path(const g4_gguf_t *g) { return g->path; }
uint32_t g4_gguf_version(const g4_gguf_t *g) { return g->version; }
uint64_t g4_gguf_file_size(const g4_gguf_t *g) { return g->size; }
uint32_t g4_gguf_alignment(const g4_gguf_t *g) { return g->alignment; }
uint64_t g4_gguf_data_offset(const g4_gguf_t *g) { return g->data_offset; }
const void *g4_gguf_base(const g4_gguf_t *g) { return g->base; }
int64_t g4_gguf_n_kv(const g4_gguf_t *g) { return g->n_kv; }
int64_t g4_gguf_n_tensors(const g4_gguf_t *g) { return g->n_tensors; }
const char *g4_gguf_key(const g4_gguf_t *g, int64_t i) { return g->kvs[i].key; }

void g4_gguf_kv_value(const g4_gguf_t *g, int64_t i, g4_gguf_value_t *out)
{
    const s_kv_t *kv = &g->kvs[i];
    s_decode(g, kv->type, kv->off, kv->table, out);
}

g4_gguf_type_t g4_gguf_kv_raw(const g4_gguf_t *g, int64_t i, const void **data, uint64_t *len)
{
    *data = g->base + g->kvs[i].off;
    *len = g->kvs[i].end - g->kvs[i].off;
    return g->kvs[i].type;
}

int64_t g4_gguf_find_key(const g4_gguf_t *g, const char *key)
{
    return s_hash_get(g->kv_hash, g->kv_hash_cap, key, s_kv_name, g);
}

int64_t g4_gguf_find_tensor(const g4_gguf_t *g, const char *name)
{
    return s_hash_get(g->ti_hash, g->ti_hash_cap, name, s_ti_name, g);
}

void g4_gguf_tensor(const g4_gguf_t *g, int64_t i, g4_tensor_t *t)
{
    const s_ti_t *ti = &g->tis[i];
    memset(t, 0, sizeof *t);
    t->name = ti->name;
    t->data = (void *)(g->base + g->data_offset + ti->offset);
    t->dtype = (g4_dtype_t)ti->type;
    t->n_dims = (int)ti->n_dims;
    const g4_dtype_traits_t *tr = g4_dtype_traits(ti->type);
    for (int d = 0; d < G4_MAX_DIMS; d++) t->ne[d] = ti->ne[d];
    t->nb[0] = tr->type_size;
    t->nb[1] = (uint64_t)ti->ne[0] / tr->block_size * tr->type_size;
    for (int d = 2; d < G4_MAX_DIMS; d++) t->nb[d] = t->nb[d - 1] * (uint64_t)ti->ne[d - 1];
    t->n_bytes = ti->n_bytes;
}

uint64_t g4_gguf_tensor_offset(const g4_gguf_t *g, int64_t i) { return g->tis[i].offset; }

int g4_gguf_value_as_i64(const g4_gguf_value_t *v, int64_t *out)
{
    switch (v->type) {
    case G4_GGUF_U8: case G4_GGUF_U16: case G4_GGUF_U32: case G4_GGUF_BOOL: *out = (int64_t)v->v.u; return 0;
    case G4_GGUF_U64:
        if (v->v.u > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)v->v.u;
        return 0;
    case G4_GGUF_I8: case G4_GGUF_I16: case G4_GGUF_I32: case G4_GGUF_I64: *out = v->v.i; return 0;
    default: return -1;
    }
}

int g4_gguf_value_as_f64(const g4_gguf_value_t *v, double *out)
{
    int64_t i;
    if (v->type == G4_GGUF_F32 || v->type == G4_GGUF_F64) {
        *out = v->v.f;
        return 0;
    }
    if (g4_gguf_value_as_i64(v, &i) == 0) {
        *out = (double)i;
        return 0;
    }
    return -1;
}

static int s_get(const g4_gguf_t *g, const char *key, g4_gguf_value_t *v, g4_err_t *err)
{
    int64_t i = g4_gguf_find_key(g, key);
    if (i < 0) return g4_err_set(err, G4_ERR_FORMAT, "%s: missing key '%s'", g->path, key);
    g4_gguf_kv_value(g, i, v);
    return G4_OK;
}

static int s_wrong(const g4_gguf_t *g, const char *key, const g4_gguf_value_t *v, const char *want, g4_err_t *err)
{
    return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' has type %s, expected %s", g->path, key,
                      g4_gguf_type_name(v->type), want);
}

int g4_gguf_get_i64(const g4_gguf_t *g, const char *key, int64_t *out, g4_err_t *err)
{
    g4_gguf_value_t v;
    int rc = s_get(g, key, &v, err);
    if (rc) return rc;
    if (v.type == G4_GGUF_BOOL || g4_gguf_value_as_i64(&v, out)) return s_wrong(g, key, &v, "an integer", err);
    return G4_OK;
}

int g4_gguf_get_u64(const g4_gguf_t *g, const char *key, uint64_t *out, g4_err_t *err)
{
    g4_gguf_value_t v;
    int rc = s_get(g, key, &v, err);
    if (rc) return rc;
    if (v.type == G4_GGUF_U64) {
        *out = v.v.u;
        return G4_OK;
    }
    int64_t x;
    if (v.type == G4_GGUF_BOOL || g4_gguf_value_as_i64(&v, &x)) return s_wrong(g, key, &v, "an unsigned integer", err);
    if (x < 0) return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' is negative (%lld)", g->path, key, (long long)x);
    *out = (uint64_t)x;
    return G4_OK;
}

int g4_gguf_get_u32(const g4_gguf_t *g, const char *key, uint32_t *out, g4_err_t *err)
{
    uint64_t x = 0;
    int rc = g4_gguf_get_u64(g, key, &x, err);
    if (rc) return rc;
    if (x > UINT32_MAX) return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' = %llu does not fit in 32 bits", g->path, key,
                                          (unsigned long long)x);
    *out = (uint32_t)x;
    return G4_OK;
}

int g4_gguf_get_f32(const g4_gguf_t *g, const char *key, float *out, g4_err_t *err)
{
    g4_gguf_value_t v;
    int rc = s_get(g, key, &v, err);
    if (rc) return rc;
    if (v.type != G4_GGUF_F32 && v.type != G4_GGUF_F64) return s_wrong(g, key, &v, "FLOAT32", err);
    *out = (float)v.v.f;
    return G4_OK;
}

int g4_gguf_get_bool(const g4_gguf_t *g, const char *key, int *out, g4_err_t *err)
{
    g4_gguf_value_t v;
    int rc = s_get(g, key, &v, err);
    if (rc) return rc;
    if (v.type != G4_GGUF_BOOL) return s_wrong(g, key, &v, "BOOL", err);
    *out = v.v.u != 0;
    return G4_OK;
}

int g4_gguf_get_str(const g4_gguf_t *g, const char *key, const char **s, uint64_t *len, g4_err_t *err)
{
    g4_gguf_value_t v;
    int rc = s_get(g, key, &v, err);
    if (rc) return rc;
    if (v.type != G4_GGUF_STRING) return s_wrong(g, key, &v, "STRING", err);
    *s = v.str;
    *len = v.str_len;
    return G4_OK;
}

int g4_gguf_get_arr(const g4_gguf_t *g, const char *key, g4_gguf_value_t *out, g4_err_t *err)
{
    int rc = s_get(g, key, out, err);
    if (rc) return rc;
    if (out->type != G4_GGUF_ARRAY) return s_wrong(g, key, out, "ARRAY", err);
    return G4_OK;
}

uint64_t g4_gguf_digest(const g4_gguf_t *g)
{
    /* FNV-1a over the metadata and tensor table, then the file size: cheap
     * (no pass over the weights) and different for any re-conversion */
    const uint8_t *p = g4_gguf_base(g);
    uint64_t h = 1469598103934665603ull, n = g4_gguf_data_offset(g), sz = g4_gguf_file_size(g);
    for (uint64_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    for (int i = 0; i < 8; i++) h = (h ^ ((sz >> (8 * i)) & 0xff)) * 1099511628211ull;
    return h;
}
