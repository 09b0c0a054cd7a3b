/* g4_gguf_write — see g4_gguf_write.h. */
#include "g4_gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "g4_alloc.h"

typedef struct s_buf {
    uint8_t *p;
    size_t n, cap;
    int failed;
} s_buf_t;

static void s_put(s_buf_t *b, const void *data, size_t n)
{
    if (b->failed) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = g4_realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void s_put_u32(s_buf_t *b, uint32_t v) { s_put(b, &v, 4); }
static void s_put_u64(s_buf_t *b, uint64_t v) { s_put(b, &v, 8); }
static void s_put_str(s_buf_t *b, const char *s, size_t n)
{
    s_put_u64(b, n);
    s_put(b, s, n);
}

typedef struct s_wt {
    char *name;
    g4_dtype_t dtype;
    int n_dims;
    int64_t ne[4];
    const void *data;
    uint64_t n_bytes;
} s_wt_t;

struct g4_gguf_writer {
    s_buf_t kv;
    uint64_t n_kv;
    s_wt_t *tensors;
    uint64_t n_tensors, cap_tensors;
    uint32_t alignment;
};

g4_gguf_writer_t *g4_gguf_writer_new(g4_err_t *err)
{
    g4_gguf_writer_t *w = g4_calloc(1, sizeof *w);
    if (!w) {
        g4_err_set(err, G4_ERR_NOMEM, "gguf writer: out of memory");
        return NULL;
    }
    w->alignment = 32;
    return w;
}

void g4_gguf_writer_destroy(g4_gguf_writer_t **pw)
{
    g4_gguf_writer_t *w = pw ? *pw : NULL;
    if (!w) return;
    for (uint64_t i = 0; i < w->n_tensors; i++) g4_free(w->tensors[i].name);
    g4_free(w->tensors);
    g4_free(w->kv.p);
    g4_free(w);
    *pw = NULL;
}

static int s_key(g4_gguf_writer_t *w, const char *key, g4_gguf_type_t t)
{
    s_put_str(&w->kv, key, strlen(key));
    s_put_u32(&w->kv, (uint32_t)t);
    w->n_kv++;
    return w->kv.failed ? G4_ERR_NOMEM : G4_OK;
}

int g4_gguf_writer_set_alignment(g4_gguf_writer_t *w, uint32_t a)
{
    if (a == 0 || (a & (a - 1))) return G4_ERR_RANGE;
    w->alignment = a;
    if (a != 32) return g4_gguf_writer_add_u32(w, "general.alignment", a);
    return G4_OK;
}

int g4_gguf_writer_add_u32(g4_gguf_writer_t *w, const char *key, uint32_t v)
{
    s_key(w, key, G4_GGUF_U32);
    s_put_u32(&w->kv, v);
    return w->kv.failed ? G4_ERR_NOMEM : G4_OK;
}

int g4_gguf_writer_add_i32(g4_gguf_writer_t *w, const char *key, int32_t v)
{
    s_key(w, key, G4_GGUF_I32);
    s_put(&w->kv, &v, 4);
    return w->kv.failed ? G4_ERR_NOMEM : G4_OK;
}

int g4_gguf_writer_add_u64(g4_gguf_writer_t *w, const char *key, uint64_t v)
{
    s_key(w, key, G4_GGUF_U64);
    s_put_u64(&w->kv, v);
    return w->kv.failed ? G4_ERR_NOMEM : G4_OK;
}

int g4_gguf_writer_add_f32(g4_gguf_writer_t *w, const char *key, float v)
{
    s_key(w, key, G4_GGUF_F32);
    s_put(&w->kv, &v, 4);
    return w->kv.failed ? G4_ERR_NOMEM : G4_OK;
}

int g4_gguf_writer_add_bool(g4_gguf_writer_t *w, const char *key, int v)
{
    uint8_t b = v ? 1 : 0;
    s_key(w, key, G4_GGUF_BOOL);
    s_put(&w->kv, &b, 1);
    return w->kv.failed ? G4_ERR_NOMEM : G4_OK;
}

int g4_gguf_writer_add_str(g4_gguf_writer_t *w, const char *key, const char *s)
{
    s_key(w, key, G4_GGUF_STRING);
    s_put_str(&w->kv, s, strlen(s));
    return w->kv.failed ? G4_ERR_NOMEM : G4_OK;
}

int g4_gguf_writer_add_arr(g4_gguf_writer_t *w, const char *key, g4_gguf_type_t et, const void *data, uint64_t n)
{
    static const uint8_t sz[G4_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if ((unsigned)et >= G4_GGUF_TYPE_COUNT || !sz[et]) return G4_ERR_RANGE;
    s_key(w, key, G4_GGUF_ARRAY);
    s_put_u32(&w->kv, (uint32_t)et);
    s_put_u64(&w->kv, n);
    s_put(&w->kv, data, (size_t)n * sz[et]);
    return w->kv.failed ? G4_ERR_NOMEM : G4_OK;
}

int g4_gguf_writer_add_arr_str(g4_gguf_writer_t *w, const char *key, const char *const *strs, uint64_t n)
{
    s_key(w, key, G4_GGUF_ARRAY);
    s_put_u32(&w->kv, G4_GGUF_STRING);
    s_put_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) s_put_str(&w->kv, strs[i], strlen(strs[i]));
    return w->kv.failed ? G4_ERR_NOMEM : G4_OK;
}

int g4_gguf_writer_add_raw(g4_gguf_writer_t *w, const char *key, g4_gguf_type_t type, const void *data, uint64_t len)
{
    s_key(w, key, type);
    s_put(&w->kv, data, (size_t)len);
    return w->kv.failed ? G4_ERR_NOMEM : G4_OK;
}

int g4_gguf_writer_add_tensor(g4_gguf_writer_t *w, const char *name, g4_dtype_t dtype, int n_dims, const int64_t *ne,
                              const void *data)
{
    if (n_dims < 1 || n_dims > 4 || !g4_dtype_traits(dtype)) return G4_ERR_RANGE;
    uint64_t bytes = g4_dtype_row_bytes(dtype, (uint64_t)ne[0]);
    if (!bytes && ne[0]) return G4_ERR_RANGE;
    for (int d = 1; d < n_dims; d++) bytes *= (uint64_t)ne[d];
    if (w->n_tensors == w->cap_tensors) {
        uint64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        s_wt_t *t = g4_realloc(w->tensors, (size_t)cap * sizeof *t);
        if (!t) return G4_ERR_NOMEM;
        w->tensors = t;
        w->cap_tensors = cap;
    }
    s_wt_t *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = g4_strdup(name);
    if (!t->name) return G4_ERR_NOMEM;
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->data = data;
    t->n_bytes = bytes;
    w->n_tensors++;
    return G4_OK;
}

static uint64_t s_pad(uint64_t x, uint64_t a) { return (a - x % a) % a; }

/* Everything before the tensor data: header, metadata, infos, padding. */
static void s_header(g4_gguf_writer_t *w, s_buf_t *b)
{
    s_put_u32(b, 0x46554747u);
    s_put_u32(b, 3);
    s_put_u64(b, w->n_tensors);
    s_put_u64(b, w->n_kv);
    s_put(b, w->kv.p, w->kv.n);
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const s_wt_t *t = &w->tensors[i];
        s_put_str(b, t->name, strlen(t->name));
        s_put_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) s_put_u64(b, (uint64_t)t->ne[d]);
        s_put_u32(b, (uint32_t)t->dtype);
        s_put_u64(b, off);
        off += t->n_bytes + s_pad(t->n_bytes, w->alignment);
    }
    static const uint8_t zeros[256] = {0};
    for (uint64_t pad = s_pad(b->n, w->alignment); pad;) {
        uint64_t k = pad < 256 ? pad : 256;
        s_put(b, zeros, k);
        pad -= k;
    }
}

int g4_gguf_writer_write_mem(g4_gguf_writer_t *w, uint8_t **out, size_t *size, g4_err_t *err)
{
    static const uint8_t zeros[256] = {0};
    s_buf_t b = {0};
    s_header(w, &b);
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const s_wt_t *t = &w->tensors[i];
        s_put(&b, t->data, t->n_bytes);
        for (uint64_t pad = s_pad(t->n_bytes, w->alignment); pad;) {
            uint64_t k = pad < 256 ? pad : 256;
            s_put(&b, zeros, k);
            pad -= k;
        }
    }
    if (b.failed || w->kv.failed) {
        g4_free(b.p);
        return g4_err_set(err, G4_ERR_NOMEM, "gguf writer: out of memory");
    }
    *out = b.p;
    *size = b.n;
    return G4_OK;
}

int g4_gguf_writer_write_header(g4_gguf_writer_t *w, FILE *f, g4_err_t *err)
{
    s_buf_t b = {0};
    s_header(w, &b);
    if (b.failed || w->kv.failed) {
        g4_free(b.p);
        return g4_err_set(err, G4_ERR_NOMEM, "gguf writer: out of memory");
    }
    const int ok = fwrite(b.p, 1, b.n, f) == b.n;
    g4_free(b.p);
    if (!ok) return g4_err_set(err, G4_ERR_IO, "gguf writer: header write failed: %s", strerror(errno));
    return G4_OK;
}

int g4_gguf_writer_write(g4_gguf_writer_t *w, const char *path, g4_err_t *err)
{
    static const uint8_t zeros[256] = {0};
    s_buf_t b = {0};
    s_header(w, &b);
    if (b.failed || w->kv.failed) {
        g4_free(b.p);
        return g4_err_set(err, G4_ERR_NOMEM, "gguf writer: out of memory");
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        g4_free(b.p);
        return g4_err_set(err, G4_ERR_IO, "%s: %s", path, strerror(errno));
    }
    int ok = fwrite(b.p, 1, b.n, f) == b.n;
    g4_free(b.p);
    for (uint64_t i = 0; ok && i < w->n_tensors; i++) {
        const s_wt_t *t = &w->tensors[i];
        ok = fwrite(t->data, 1, t->n_bytes, f) == t->n_bytes;
        uint64_t pad = s_pad(t->n_bytes, w->alignment);
        if (ok && pad) ok = fwrite(zeros, 1, pad, f) == pad;
    }
    if (fclose(f) != 0) ok = 0;
    if (!ok) return g4_err_set(err, G4_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return G4_OK;
}
