/* g4_model — Gemma 4 decoder on CPU. See g4_model.h for the computation.
 * Sections: hyper-parameters, weights, context and sequences, attention,
 * layer, forward. Mirrors llama.cpp src/models/gemma4.cpp and the CPU
 * kernels it runs (the §8 roundings of docs gemma4-model.md). */
#include "g4_model.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "g4_act.h"
#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_dot.h"
#include "g4_matmul.h"
#include "g4_norm.h"
#include "g4_rope.h"

/* ====================================================================== */
/* hyper-parameters                                                       */
/* ====================================================================== */

#define KEY(k) (snprintf(key, sizeof key, "%s.%s", arch, k), key)

/* u32 or per-layer array of integers; def used when the key is absent (def < 0: required) */
static int s_layer_u32(const g4_gguf_t *g, const char *key, uint32_t n_layer, int64_t def, uint32_t *out,
                       g4_err_t *err)
{
    int64_t i = g4_gguf_find_key(g, key);
    if (i < 0) {
        if (def < 0) return g4_err_set(err, G4_ERR_FORMAT, "%s: missing key '%s'", g4_gguf_path(g), key);
        for (uint32_t l = 0; l < n_layer; l++) out[l] = (uint32_t)def;
        return G4_OK;
    }
    g4_gguf_value_t v;
    g4_gguf_kv_value(g, i, &v);
    if (v.type == G4_GGUF_ARRAY) {
        if (v.arr_n != n_layer)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' has %llu entries, expected one per layer (%u)",
                              g4_gguf_path(g), key, (unsigned long long)v.arr_n, n_layer);
        for (uint32_t l = 0; l < n_layer; l++) {
            g4_gguf_value_t e;
            int64_t x;
            g4_gguf_arr_get(g, &v, l, &e);
            if (g4_gguf_value_as_i64(&e, &x) || e.type == G4_GGUF_BOOL || x < 0 || x > UINT32_MAX)
                return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' entry %u is not a non-negative integer",
                                  g4_gguf_path(g), key, l);
            out[l] = (uint32_t)x;
        }
        return G4_OK;
    }
    uint32_t x;
    int rc = g4_gguf_get_u32(g, key, &x, err);
    if (rc) return rc;
    for (uint32_t l = 0; l < n_layer; l++) out[l] = x;
    return G4_OK;
}

static int s_opt_u32(const g4_gguf_t *g, const char *key, uint32_t def, uint32_t *out, g4_err_t *err)
{
    if (g4_gguf_find_key(g, key) < 0) {
        *out = def;
        return G4_OK;
    }
    return g4_gguf_get_u32(g, key, out, err);
}

static int s_opt_f32(const g4_gguf_t *g, const char *key, float def, float *out, g4_err_t *err)
{
    if (g4_gguf_find_key(g, key) < 0) {
        *out = def;
        return G4_OK;
    }
    return g4_gguf_get_f32(g, key, out, err);
}

static int s_hparams(const g4_gguf_t *g, g4_hparams_t *hp, g4_err_t *err)
{
    const char *path = g4_gguf_path(g);
    const char *as;
    uint64_t alen;
    int rc = g4_gguf_get_str(g, "general.architecture", &as, &alen, err);
    if (rc) return rc;
    if (alen != 6 || memcmp(as, "gemma4", 6) != 0)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: architecture '%.*s' is not supported (g4 runs 'gemma4')", path,
                          (int)(alen > 64 ? 64 : alen), as);
    const char *arch = "gemma4";
    char key[256];
    memset(hp, 0, sizeof *hp);
    if ((rc = g4_gguf_get_u32(g, KEY("context_length"), &hp->n_ctx_train, err))) return rc;
    if ((rc = g4_gguf_get_u32(g, KEY("embedding_length"), &hp->n_embd, err))) return rc;
    if ((rc = g4_gguf_get_u32(g, KEY("block_count"), &hp->n_layer, err))) return rc;
    if (hp->n_layer == 0 || hp->n_layer > G4_MAX_LAYERS)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' = %u is outside [1, %d]", path, KEY("block_count"),
                          hp->n_layer, G4_MAX_LAYERS);
    if (hp->n_embd == 0 || hp->n_embd > (1u << 20))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' = %u is not a sane width", path, KEY("embedding_length"),
                          hp->n_embd);
    uint32_t tmp[G4_MAX_LAYERS];
    if ((rc = s_layer_u32(g, KEY("attention.head_count"), hp->n_layer, -1, tmp, err))) return rc;
    hp->n_head = tmp[0];
    for (uint32_t l = 1; l < hp->n_layer; l++)
        if (tmp[l] != hp->n_head)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' varies per layer, which gemma4 does not use", path,
                              KEY("attention.head_count"));
    if (hp->n_head == 0) return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' is 0", path, KEY("attention.head_count"));
    if ((rc = s_layer_u32(g, KEY("attention.head_count_kv"), hp->n_layer, hp->n_head, hp->n_head_kv, err))) return rc;
    if ((rc = s_layer_u32(g, KEY("feed_forward_length"), hp->n_layer, 0, hp->n_ff, err))) return rc;
    if ((rc = s_opt_u32(g, KEY("attention.key_length"), hp->n_embd / hp->n_head, &hp->hd_full, err))) return rc;
    uint32_t vlen, vlen_swa;
    if ((rc = s_opt_u32(g, KEY("attention.value_length"), hp->hd_full, &vlen, err))) return rc;
    if ((rc = g4_gguf_get_u32(g, KEY("attention.key_length_swa"), &hp->hd_swa, err))) return rc;
    if ((rc = s_opt_u32(g, KEY("attention.value_length_swa"), hp->hd_swa, &vlen_swa, err))) return rc;
    if (vlen != hp->hd_full || vlen_swa != hp->hd_swa)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: key and value head sizes differ (%u/%u, %u/%u)", path, hp->hd_full,
                          vlen, hp->hd_swa, vlen_swa);
    if ((rc = s_opt_u32(g, KEY("rope.dimension_count"), hp->hd_full, &hp->n_rot_full, err))) return rc;
    if ((rc = s_opt_u32(g, KEY("rope.dimension_count_swa"), hp->n_rot_full, &hp->n_rot_swa, err))) return rc;
    if ((rc = s_opt_f32(g, KEY("rope.freq_base"), 10000.f, &hp->rope_base_full, err))) return rc;
    if ((rc = s_opt_f32(g, KEY("rope.freq_base_swa"), 10000.f, &hp->rope_base_swa, err))) return rc;
    if ((rc = g4_gguf_get_f32(g, KEY("attention.layer_norm_rms_epsilon"), &hp->eps, err))) return rc;
    if ((rc = g4_gguf_get_u32(g, KEY("attention.sliding_window"), &hp->n_swa, err))) return rc;
    if ((rc = s_opt_u32(g, KEY("attention.shared_kv_layers"), 0, &hp->n_kv_shared, err))) return rc;
    if ((rc = g4_gguf_get_u32(g, KEY("embedding_length_per_layer_input"), &hp->ple_dim, err))) return rc;
    if ((rc = s_opt_u32(g, KEY("expert_count"), 0, &hp->n_expert, err))) return rc;
    if (hp->n_expert) {
        if ((rc = s_layer_u32(g, KEY("expert_used_count"), hp->n_layer, -1, tmp, err))) return rc;
        hp->n_expert_used = tmp[0];
        if ((rc = s_layer_u32(g, KEY("expert_feed_forward_length"), hp->n_layer, -1, tmp, err))) return rc;
        hp->n_ff_exp = tmp[0];
        if (hp->n_expert_used == 0 || hp->n_expert_used > hp->n_expert || hp->n_expert > 4096)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: expert_used_count %u / expert_count %u are inconsistent", path,
                              hp->n_expert_used, hp->n_expert);
    }
    if ((rc = s_opt_f32(g, KEY("final_logit_softcapping"), 30.0f, &hp->softcap, err))) return rc;
    /* sliding pattern: bool per layer */
    g4_gguf_value_t pat;
    if ((rc = g4_gguf_get_arr(g, KEY("attention.sliding_window_pattern"), &pat, err))) return rc;
    if (pat.arr_n != hp->n_layer)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' has %llu entries, expected %u", path,
                          KEY("attention.sliding_window_pattern"), (unsigned long long)pat.arr_n, hp->n_layer);
    int any_swa = 0;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        g4_gguf_value_t e;
        g4_gguf_arr_get(g, &pat, l, &e);
        if (e.type != G4_GGUF_BOOL)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' must be an array of BOOL", path,
                              KEY("attention.sliding_window_pattern"));
        hp->is_swa[l] = (uint8_t)e.v.u;
        any_swa |= hp->is_swa[l];
    }
    /* consistency */
    if (!any_swa) return g4_err_set(err, G4_ERR_FORMAT, "%s: no sliding-window layer in the pattern", path);
    if (hp->n_swa == 0) return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' is 0", path, KEY("attention.sliding_window"));
    if (hp->n_kv_shared >= hp->n_layer)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' = %u leaves no layer with its own KV", path,
                          KEY("attention.shared_kv_layers"), hp->n_kv_shared);
    hp->n_layer_kv = hp->n_layer - hp->n_kv_shared;
    if (hp->n_kv_shared && (hp->n_layer_kv < 2 || !hp->is_swa[hp->n_layer_kv - 2] || hp->is_swa[hp->n_layer_kv - 1]))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: with shared KV layers, layer %u must be sliding and %u full", path,
                          hp->n_layer_kv - 2, hp->n_layer_kv - 1);
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const uint32_t hd = hp->is_swa[l] ? hp->hd_swa : hp->hd_full;
        if (hd == 0 || hd > 4096 || hd % 2)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: head size %u of layer %u is not usable", path, hd, l);
        if (hp->n_head_kv[l] == 0 || hp->n_head % hp->n_head_kv[l])
            return g4_err_set(err, G4_ERR_FORMAT, "%s: layer %u: %u KV heads do not divide %u heads", path, l,
                              hp->n_head_kv[l], hp->n_head);
        if (hp->n_ff[l] == 0 && !hp->n_expert)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: layer %u: feed_forward_length is 0", path, l);
    }
    if (hp->n_rot_full > hp->hd_full || hp->n_rot_swa > hp->hd_swa || hp->n_rot_full % 2 || hp->n_rot_swa % 2)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: rope dimension counts (%u, %u) exceed the head sizes (%u, %u)", path,
                          hp->n_rot_full, hp->n_rot_swa, hp->hd_full, hp->hd_swa);
    /* tokenizer ids */
    hp->bos_id = 2;
    hp->eos_id = 1;
    s_opt_u32(g, "tokenizer.ggml.bos_token_id", 2, &hp->bos_id, NULL);
    s_opt_u32(g, "tokenizer.ggml.eos_token_id", 1, &hp->eos_id, NULL);
    return G4_OK;
}

/* ====================================================================== */
/* weights                                                                */
/* ====================================================================== */

typedef struct s_layer {
    g4_tensor_t wq, wk, wv, wo, gate, up, down;
    int has_wk, has_wv;
    float *attn_norm, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffw_norm;
    float out_scale;
    int has_out_scale;
    /* MoE */
    g4_tensor_t gate_inp, gate_up_exps, gate_exps, up_exps, down_exps;
    int fused_gate_up;
    float *gate_inp_scale, *pre_ffw_norm_2, *post_ffw_norm_1, *post_ffw_norm_2, *down_exps_scale;
    /* PLE */
    g4_tensor_t inp_gate, proj;
    float *post_norm;
} s_layer_t;

struct g4_model {
    g4_gguf_t *gguf;
    int owns_gguf;
    g4_hparams_t hp;
    int begin, end;
    g4_tensor_t tok_embd, output, ple_tok_embd, ple_proj;
    float *output_norm, *rope_freqs, *ple_proj_norm;
    int n_rope_freqs;
    s_layer_t *layers; /* [n_layer], only [begin, end) filled */
    float **owned;     /* f32 copies of small vectors */
    int n_owned, cap_owned;
    /* weight ranges this model multiplies with; a background thread started
     * by g4_model_warm maps them in or copies them (see there) */
    struct s_range {
        const uint8_t *p;             /* the file's bytes                     */
        size_t n;
        const g4_tensor_t *t;         /* the matrix (its data: file or copy)  */
        _Atomic(const uint8_t *) copy; /* the copy, once complete (COPY mode) */
    } *pf;
    int n_pf, cap_pf;
    pthread_t pf_thread;
    int pf_running;
    atomic_int pf_stop;
    atomic_int pf_done;     /* the thread has finished                      */
    int n_adopted;          /* ranges whose tensors point at their copy     */
    pthread_mutex_t adopt_mu;
    g4_weights_mode_t mode; /* what g4_model_warm chose                     */
    uint8_t *copy_base;     /* anonymous memory of the copies               */
    size_t copy_bytes;
    uint64_t warm_ns;       /* from g4_model_warm to the thread's end       */
};

/* A matrix is read whole on every forward pass: note it for g4_model_warm. */
static void s_note_weights(g4_model_t *m, const g4_tensor_t *t)
{
    if (!t->data || t->n_dims < 2) return;
    if (m->n_pf == m->cap_pf) {
        const int cap = m->cap_pf ? 2 * m->cap_pf : 32;
        struct s_range *r = g4_realloc(m->pf, (size_t)cap * sizeof *r);
        if (!r) return; /* prefaulting is an optimisation only */
        m->pf = r, m->cap_pf = cap;
    }
    struct s_range *r = &m->pf[m->n_pf++];
    r->p = t->data, r->n = (size_t)(t->nb[3] * (uint64_t)t->ne[3]), r->t = t;
    atomic_init(&r->copy, NULL);
}

/* Readying the weights (g4_model_warm).
 *
 * MAP: the first forward pass over an mmap'ed file takes a page fault per
 * 4 KiB of weights (measured: ~8 % of a 512-token prefill of a 1.8 GB
 * model), so the thread maps the ranges in (MADV_POPULATE_READ, or one read
 * per page on kernels without it).
 *
 * COPY: the page cache holds a file in whatever folios it read it with, so
 * the mapping is a mix of 2 MiB and 4 KiB pages, and a decode that streams
 * every weight once per token loses to TLB misses and to prefetchers that
 * stop at 4 KiB boundaries (measured on a 1.8 GB Q4_K_M model, decode: 8 %
 * faster in one alternated set, 21 vs 27-29 tok/s in another). The thread copies each range into
 * anonymous memory asking for transparent huge pages (allocated under the
 * process's memory binding, so a NUMA-bound shard gets node-local weights),
 * layers first and the LM head last, at a low priority (nice 10), and
 * publishes it; g4_ctx_forward points
 * the tensors at the finished copies between passes (never during one) and
 * drops the file's pages from the process, so resident memory does not
 * double. Readiness never waits for it. */
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define S_HUGE ((size_t)2 << 20)

static int s_populate(g4_model_t *m, const uint8_t *p0, size_t n0, int *have_madv)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), chunk = (uintptr_t)64 << 20;
    const uintptr_t p = (uintptr_t)p0, e = p + n0;
    for (uintptr_t b = p & ~(page - 1); b < e; b += chunk) {
        if (atomic_load(&m->pf_stop)) return 1;
        const uintptr_t n = e - b < chunk ? e - b : chunk;
        if (*have_madv && madvise((void *)b, n, MADV_POPULATE_READ) == 0) continue;
        *have_madv = 0; /* kernel without it: one read per page, inside the range */
        volatile uint8_t sink = 0;
        for (uintptr_t q = b; q < b + n; q += page) sink ^= *(const volatile uint8_t *)(q < p ? p : q);
        (void)sink;
    }
    return 0;
}

/* gives the whole pages inside [p, p+n) of the private read-only file
 * mapping back: the page cache keeps them, a later touch faults them in */
static void s_drop_pages(const uint8_t *p, size_t n)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t b = ((uintptr_t)p + page - 1) & ~(page - 1), e = ((uintptr_t)p + n) & ~(page - 1);
    if (e > b) (void)madvise((void *)b, e - b, MADV_DONTNEED);
}

static void *s_warm_thread(void *arg)
{
    g4_model_t *m = arg;
    const uint64_t t0 = g4_clock_mono_ns();
    int have_madv = 1;
    if (m->mode == G4_WEIGHTS_COPY) {
        /* copy mostly on cores the computation leaves idle: a pass running
         * meanwhile keeps most of its speed. Not SCHED_IDLE: faulting the
         * copy in holds the process's mmap lock, and a thread that busy
         * cores never run would hold it for as long as they compute, so
         * every mmap/munmap (a big message buffer) and then every page fault
         * of the process -- its heartbeats included -- would wait that long
         * (seen: a shard taken for dead mid-prefill). A low nice value still
         * runs it every few scheduler periods, and it faults in 8 MiB at a time. */
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    }
    size_t off = 0;
    for (int i = 0; i < m->n_pf && !atomic_load(&m->pf_stop); i++) {
        if (m->mode == G4_WEIGHTS_MAP) {
            s_populate(m, m->pf[i].p, m->pf[i].n, &have_madv);
            continue;
        }
        uint8_t *dst = m->copy_base + off;
        const size_t n = m->pf[i].n, chunk = (size_t)8 << 20;
        off += (n + 63) & ~(size_t)63;
        size_t k = 0;
        for (; k < n && !atomic_load(&m->pf_stop); k += chunk) {
            const size_t c = n - k < chunk ? n - k : chunk;
            /* faulting a range in at once is several times faster than a
             * first write per page (and gets huge pages where the kernel
             * has them); a chunk at a time holds the mmap lock briefly */
            (void)madvise(dst + k, c, MADV_POPULATE_WRITE);
            memcpy(dst + k, m->pf[i].p + k, c);
            /* the process keeps one copy resident, not two (a pass still
             * reading the file's pages faults them back in from the cache) */
            s_drop_pages(m->pf[i].p + k, c);
        }
        if (k >= n) atomic_store_explicit(&m->pf[i].copy, dst, memory_order_release);
    }
    m->warm_ns = g4_clock_mono_ns() - t0;
    atomic_store(&m->pf_done, 1);
    return NULL;
}

/* every matrix of the model, for repointing them at a copy */
static void s_repoint(g4_model_t *m, const uint8_t *from, const uint8_t *to)
{
    static const size_t lt[] = {offsetof(s_layer_t, wq),           offsetof(s_layer_t, wk),
                                offsetof(s_layer_t, wv),           offsetof(s_layer_t, wo),
                                offsetof(s_layer_t, gate),         offsetof(s_layer_t, up),
                                offsetof(s_layer_t, down),         offsetof(s_layer_t, gate_inp),
                                offsetof(s_layer_t, gate_up_exps), offsetof(s_layer_t, gate_exps),
                                offsetof(s_layer_t, up_exps),      offsetof(s_layer_t, down_exps),
                                offsetof(s_layer_t, inp_gate),     offsetof(s_layer_t, proj)};
    g4_tensor_t *top[] = {&m->tok_embd, &m->output, &m->ple_tok_embd, &m->ple_proj};
    for (size_t k = 0; k < sizeof top / sizeof *top; k++)
        if (top[k]->data == from) top[k]->data = (void *)to;
    for (int l = m->begin; l < m->end; l++)
        for (size_t k = 0; k < sizeof lt / sizeof *lt; k++) {
            g4_tensor_t *t = (g4_tensor_t *)((char *)&m->layers[l] + lt[k]);
            if (t->data == from) t->data = (void *)to;
        }
}

/* Between forward passes: point the tensors at the copies finished so far
 * and give the file's pages of those ranges back (a private read-only file
 * mapping: the page cache keeps them; touching one again would just fault
 * it back in). */
static void s_adopt(g4_model_t *m)
{
    if (m->mode != G4_WEIGHTS_COPY || m->n_adopted == m->n_pf) return;
    pthread_mutex_lock(&m->adopt_mu);
    while (m->n_adopted < m->n_pf) {
        struct s_range *r = &m->pf[m->n_adopted];
        const uint8_t *c = atomic_load_explicit(&r->copy, memory_order_acquire);
        if (!c) break;
        s_repoint(m, r->p, c);
        s_drop_pages(r->p, r->n); /* what the last passes faulted back in */
        m->n_adopted++;
    }
    if (m->n_adopted == m->n_pf) (void)mprotect(m->copy_base, m->copy_bytes, PROT_READ);
    pthread_mutex_unlock(&m->adopt_mu);
}

/* bytes the system can give this process without swapping or OOM: the
 * smaller of MemAvailable and the cgroup's headroom */
static uint64_t s_mem_available(void)
{
    uint64_t avail = UINT64_MAX;
    char line[256];
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) avail = (uint64_t)kb * 1024;
        fclose(f);
    }
    unsigned long long max = 0, cur = 0;
    f = fopen("/sys/fs/cgroup/memory.max", "r");
    if (f) {
        if (fscanf(f, "%llu", &max) != 1) max = 0; /* "max": no limit */
        fclose(f);
    }
    f = fopen("/sys/fs/cgroup/memory.current", "r");
    if (f) {
        if (fscanf(f, "%llu", &cur) != 1) cur = 0;
        fclose(f);
    }
    if (max && max > cur && max - cur < avail) avail = max - cur;
    return avail;
}

g4_weights_mode_t g4_model_warm(g4_model_t *m, g4_weights_mode_t mode)
{
    if (m->pf_running || m->n_pf == 0) return m->mode;
    if (mode == G4_WEIGHTS_COPY) {
        size_t total = 0;
        for (int i = 0; i < m->n_pf; i++) total += (m->pf[i].n + 63) & ~(size_t)63;
        const size_t len = (total + S_HUGE - 1) / S_HUGE * S_HUGE;
        /* leave an eighth of what is available (at least 512 MiB) to the rest */
        const uint64_t avail = s_mem_available(), keep = avail / 8 > ((uint64_t)512 << 20) ? avail / 8 : (uint64_t)512 << 20;
        void *p = avail > keep && len <= avail - keep
                      ? mmap(NULL, len + S_HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                      : MAP_FAILED;
        if (p == MAP_FAILED) {
            mode = G4_WEIGHTS_MAP;
        } else {
            /* 2 MiB-aligned start, the rest unmapped */
            uint8_t *a = (uint8_t *)(((uintptr_t)p + S_HUGE - 1) & ~(uintptr_t)(S_HUGE - 1));
            if (a > (uint8_t *)p) munmap(p, (size_t)(a - (uint8_t *)p));
            if ((uint8_t *)p + len + S_HUGE > a + len) munmap(a + len, (size_t)((uint8_t *)p + len + S_HUGE - (a + len)));
            (void)madvise(a, len, MADV_HUGEPAGE);
            m->copy_base = a, m->copy_bytes = len;
        }
    }
    m->mode = mode;
    if (getenv("G4_NO_PREFAULT") && mode == G4_WEIGHTS_MAP) return mode;
    m->pf_running = pthread_create(&m->pf_thread, NULL, s_warm_thread, m) == 0;
    if (!m->pf_running && m->copy_base) {
        munmap(m->copy_base, m->copy_bytes);
        m->copy_base = NULL, m->copy_bytes = 0;
        m->mode = G4_WEIGHTS_MAP;
    }
    return m->mode;
}

int g4_model_warmed(g4_model_t *m, int wait, double *ms)
{
    if (m->pf_running && wait) {
        pthread_join(m->pf_thread, NULL);
        m->pf_running = 0;
        s_adopt(m);
    }
    const int done = !m->pf_running || atomic_load(&m->pf_done);
    if (ms) *ms = done ? (double)m->warm_ns / 1e6 : 0; /* 0: never started */
    return done;
}

static int g4_type_ops_ok(g4_dtype_t t) { return g4_type_ops(t) != NULL; }

static int s_tensor(g4_model_t *m, const char *name, int required, int n_dims, const int64_t *ne, g4_tensor_t *out,
                    g4_err_t *err)
{
    int64_t i = g4_gguf_find_tensor(m->gguf, name);
    if (i < 0) {
        memset(out, 0, sizeof *out);
        if (required) return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor '%s'", g4_gguf_path(m->gguf), name);
        return 1;
    }
    g4_gguf_tensor(m->gguf, i, out);
    for (int d = 0; d < 4; d++) {
        const int64_t want = d < n_dims ? ne[d] : 1;
        if (want >= 0 && out->ne[d] != want)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]",
                              g4_gguf_path(m->gguf), name, (long long)out->ne[0], (long long)out->ne[1],
                              (long long)out->ne[2], (long long)(n_dims > 0 ? ne[0] : 1),
                              (long long)(n_dims > 1 ? ne[1] : 1), (long long)(n_dims > 2 ? ne[2] : 1));
    }
    if (n_dims >= 2 && !g4_type_ops_ok(out->dtype))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' has type %s, which g4 cannot compute with",
                          g4_gguf_path(m->gguf), name, g4_dtype_name(out->dtype));
    /* the LM head goes last (used last); per-layer embeddings are looked up by row */
    if (n_dims >= 2 && strcmp(name, "per_layer_token_embd.weight") && strcmp(name, "output.weight")) s_note_weights(m, out);
    return G4_OK;
}

/* a 1-D tensor of n values as a f32 copy */
static int s_vec(g4_model_t *m, const char *name, int required, int64_t n, float **out, g4_err_t *err)
{
    g4_tensor_t t;
    int64_t ne[1] = {n};
    *out = NULL;
    int rc = s_tensor(m, name, required, 1, ne, &t, err);
    if (rc) return rc < 0 ? rc : G4_OK;
    if (!g4_dtype_traits(t.dtype)->computable || t.dtype == G4_DTYPE_Q8_K || t.dtype == G4_DTYPE_Q8_1)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' has type %s, expected F32", g4_gguf_path(m->gguf), name,
                          g4_dtype_name(t.dtype));
    float *v = g4_malloc((size_t)n * sizeof(float));
    if (!v) return g4_err_set(err, G4_ERR_NOMEM, "out of memory loading '%s'", name);
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        float **o = g4_realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) {
            g4_free(v);
            return g4_err_set(err, G4_ERR_NOMEM, "out of memory loading '%s'", name);
        }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = v;
    g4_dequant_row(t.dtype, t.data, v, n);
    *out = v;
    return G4_OK;
}

#define TN(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)

static int s_load_layer(g4_model_t *m, int l, g4_err_t *err)
{
    const g4_hparams_t *hp = &m->hp;
    s_layer_t *L = &m->layers[l];
    char nm[128];
    const int64_t H = hp->n_embd, hd = hp->is_swa[l] ? hp->hd_swa : hp->hd_full;
    const int64_t nq = (int64_t)hp->n_head * hd, nkv = (int64_t)hp->n_head_kv[l] * hd, ff = hp->n_ff[l];
    int rc;
    const int own_kv = l < (int)hp->n_layer_kv;
    if ((rc = s_vec(m, TN("blk.%d.attn_norm.weight", l), 1, H, &L->attn_norm, err))) return rc;
    if ((rc = s_tensor(m, TN("blk.%d.attn_q.weight", l), 1, 2, (int64_t[]){H, nq}, &L->wq, err))) return rc;
    rc = s_tensor(m, TN("blk.%d.attn_k.weight", l), own_kv, 2, (int64_t[]){H, nkv}, &L->wk, err);
    if (rc < 0) return rc;
    L->has_wk = rc == 0;
    rc = s_tensor(m, TN("blk.%d.attn_v.weight", l), 0, 2, (int64_t[]){H, nkv}, &L->wv, err);
    if (rc < 0) return rc;
    L->has_wv = rc == 0;
    if ((rc = s_tensor(m, TN("blk.%d.attn_output.weight", l), 1, 2, (int64_t[]){nq, H}, &L->wo, err))) return rc;
    if ((rc = s_vec(m, TN("blk.%d.attn_q_norm.weight", l), 1, hd, &L->q_norm, err))) return rc;
    if ((rc = s_vec(m, TN("blk.%d.attn_k_norm.weight", l), own_kv, hd, &L->k_norm, err))) return rc;
    if ((rc = s_vec(m, TN("blk.%d.post_attention_norm.weight", l), 1, H, &L->post_attn_norm, err))) return rc;
    if ((rc = s_vec(m, TN("blk.%d.ffn_norm.weight", l), 1, H, &L->ffn_norm, err))) return rc;
    if ((rc = s_vec(m, TN("blk.%d.post_ffw_norm.weight", l), 1, H, &L->post_ffw_norm, err))) return rc;
    if ((rc = s_tensor(m, TN("blk.%d.ffn_gate.weight", l), 1, 2, (int64_t[]){H, ff}, &L->gate, err))) return rc;
    if ((rc = s_tensor(m, TN("blk.%d.ffn_up.weight", l), 1, 2, (int64_t[]){H, ff}, &L->up, err))) return rc;
    if ((rc = s_tensor(m, TN("blk.%d.ffn_down.weight", l), 1, 2, (int64_t[]){ff, H}, &L->down, err))) return rc;
    float *sc = NULL;
    if ((rc = s_vec(m, TN("blk.%d.layer_output_scale.weight", l), 0, 1, &sc, err))) return rc;
    L->has_out_scale = sc != NULL;
    L->out_scale = sc ? sc[0] : 1.0f;
    if (own_kv && !L->has_wk)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor 'blk.%d.attn_k.weight'", g4_gguf_path(m->gguf), l);
    if (hp->n_expert) {
        const int64_t E = hp->n_expert, fe = hp->n_ff_exp;
        if ((rc = s_tensor(m, TN("blk.%d.ffn_gate_inp.weight", l), 1, 2, (int64_t[]){H, E}, &L->gate_inp, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.ffn_gate_inp.scale", l), 1, H, &L->gate_inp_scale, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.pre_ffw_norm_2.weight", l), 1, H, &L->pre_ffw_norm_2, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.post_ffw_norm_1.weight", l), 1, H, &L->post_ffw_norm_1, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.post_ffw_norm_2.weight", l), 1, H, &L->post_ffw_norm_2, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.ffn_down_exps.scale", l), 0, E, &L->down_exps_scale, err))) return rc;
        rc = s_tensor(m, TN("blk.%d.ffn_gate_up_exps.weight", l), 0, 3, (int64_t[]){H, 2 * fe, E}, &L->gate_up_exps, err);
        if (rc < 0) return rc;
        L->fused_gate_up = rc == 0;
        if (!L->fused_gate_up) {
            if ((rc = s_tensor(m, TN("blk.%d.ffn_gate_exps.weight", l), 1, 3, (int64_t[]){H, fe, E}, &L->gate_exps, err)))
                return rc;
            if ((rc = s_tensor(m, TN("blk.%d.ffn_up_exps.weight", l), 1, 3, (int64_t[]){H, fe, E}, &L->up_exps, err)))
                return rc;
        }
        if ((rc = s_tensor(m, TN("blk.%d.ffn_down_exps.weight", l), 1, 3, (int64_t[]){fe, H, E}, &L->down_exps, err)))
            return rc;
    }
    if (hp->ple_dim) {
        const int64_t D = hp->ple_dim;
        if ((rc = s_tensor(m, TN("blk.%d.inp_gate.weight", l), 1, 2, (int64_t[]){H, D}, &L->inp_gate, err))) return rc;
        if ((rc = s_tensor(m, TN("blk.%d.proj.weight", l), 1, 2, (int64_t[]){D, H}, &L->proj, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.post_norm.weight", l), 1, H, &L->post_norm, err))) return rc;
    }
    return G4_OK;
}

g4_model_t *g4_model_load_gguf(g4_gguf_t *gguf, int begin, int end, g4_err_t *err)
{
    g4_model_t *m = g4_calloc(1, sizeof *m);
    if (!m) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->gguf = gguf;
    pthread_mutex_init(&m->adopt_mu, NULL);
    if (s_hparams(gguf, &m->hp, err)) goto fail;
    g4_hparams_t *hp = &m->hp;
    if (end < 0) end = (int)hp->n_layer;
    if (begin < 0 || begin >= end || end > (int)hp->n_layer) {
        g4_err_set(err, G4_ERR_RANGE, "layer range [%d, %d) is outside the model's %u layers", begin, end, hp->n_layer);
        goto fail;
    }
    m->begin = begin;
    m->end = end;
    /* a KV-shared layer whose source layer runs on an earlier stage gets the
     * source's K/V rows from that stage (g4_ctx_kv_export / g4_ctx_kv_import) */
    const int64_t H = hp->n_embd;
    int64_t ti = g4_gguf_find_tensor(gguf, "token_embd.weight");
    if (ti < 0) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", g4_gguf_path(gguf));
        goto fail;
    }
    g4_gguf_tensor(gguf, ti, &m->tok_embd);
    hp->n_vocab = (uint32_t)m->tok_embd.ne[1];
    if (m->tok_embd.ne[0] != H || m->tok_embd.ne[2] != 1) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: tensor 'token_embd.weight' has width %lld, expected %lld", g4_gguf_path(gguf),
                   (long long)m->tok_embd.ne[0], (long long)H);
        goto fail;
    }
    if (!g4_type_ops_ok(m->tok_embd.dtype)) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: tensor 'token_embd.weight' has type %s, which g4 cannot compute with",
                   g4_gguf_path(gguf), g4_dtype_name(m->tok_embd.dtype));
        goto fail;
    }
    const int64_t nvoc = hp->n_vocab;
    if (end == (int)hp->n_layer) {
        int rc = s_tensor(m, "output.weight", 0, 2, (int64_t[]){H, nvoc}, &m->output, err);
        if (rc < 0) goto fail;
        if (rc) m->output = m->tok_embd; /* tied */
        if (s_vec(m, "output_norm.weight", 1, H, &m->output_norm, err)) goto fail;
    }
    {
        g4_tensor_t rf;
        int64_t ne[1] = {-1};
        int rc = s_tensor(m, "rope_freqs.weight", 0, 1, ne, &rf, err);
        if (rc < 0) goto fail;
        if (rc == 0) {
            if (rf.ne[0] * 2 < hp->n_rot_full) {
                g4_err_set(err, G4_ERR_FORMAT, "%s: tensor 'rope_freqs.weight' has %lld entries, need %u",
                           g4_gguf_path(gguf), (long long)rf.ne[0], hp->n_rot_full / 2);
                goto fail;
            }
            if (s_vec(m, "rope_freqs.weight", 1, rf.ne[0], &m->rope_freqs, err)) goto fail;
            m->n_rope_freqs = (int)rf.ne[0];
        }
    }
    if (hp->ple_dim && begin == 0) {
        const int64_t W = (int64_t)hp->n_layer * hp->ple_dim;
        if (s_tensor(m, "per_layer_token_embd.weight", 1, 2, (int64_t[]){W, nvoc}, &m->ple_tok_embd, err)) goto fail;
        if (s_tensor(m, "per_layer_model_proj.weight", 1, 2, (int64_t[]){H, W}, &m->ple_proj, err)) goto fail;
        if (s_vec(m, "per_layer_proj_norm.weight", 1, hp->ple_dim, &m->ple_proj_norm, err)) goto fail;
    }
    m->layers = g4_calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int l = begin; l < end; l++)
        if (s_load_layer(m, l, err)) goto fail;
    /* end-of-generation ids: <eos>, <turn|>, <|tool_response> when the vocabulary has them */
    hp->eog_ids[hp->n_eog++] = (int32_t)hp->eos_id;
    g4_gguf_value_t toks;
    if (g4_gguf_find_key(gguf, "tokenizer.ggml.tokens") >= 0 && !g4_gguf_get_arr(gguf, "tokenizer.ggml.tokens", &toks, NULL)) {
        static const char *const eog[] = {"<turn|>", "<|tool_response>"};
        for (uint64_t i = 0; i < toks.arr_n && i < 4096; i++) {
            g4_gguf_value_t e;
            g4_gguf_arr_get(gguf, &toks, i, &e);
            for (int k = 0; k < 2; k++)
                if (e.type == G4_GGUF_STRING && e.str_len == strlen(eog[k]) && !memcmp(e.str, eog[k], e.str_len) &&
                    hp->n_eog < 8)
                    hp->eog_ids[hp->n_eog++] = (int32_t)i;
        }
    }
    if (m->end == (int)hp->n_layer) s_note_weights(m, &m->output);
    return m;
fail:
    g4_model_destroy(&m);
    return NULL;
}

g4_model_t *g4_model_load(const char *path, int begin, int end, g4_err_t *err)
{
    g4_gguf_t *g = g4_gguf_open(path, err);
    if (!g) return NULL;
    g4_model_t *m = g4_model_load_gguf(g, begin, end, err);
    if (!m) {
        g4_gguf_destroy(&g);
        return NULL;
    }
    m->owns_gguf = 1;
    return m;
}

void g4_model_destroy(g4_model_t **pm)
{
    g4_model_t *m = pm ? *pm : NULL;
    if (!m) return;
    if (m->pf_running) {
        atomic_store(&m->pf_stop, 1);
        pthread_join(m->pf_thread, NULL);
    }
    if (m->copy_base) munmap(m->copy_base, m->copy_bytes);
    pthread_mutex_destroy(&m->adopt_mu);
    g4_free(m->pf);
    for (int i = 0; i < m->n_owned; i++) g4_free(m->owned[i]);
    g4_free(m->owned);
    g4_free(m->layers);
    if (m->owns_gguf) g4_gguf_destroy(&m->gguf);
    g4_free(m);
    *pm = NULL;
}

const g4_hparams_t *g4_model_hparams(const g4_model_t *m) { return &m->hp; }

int g4_model_weights_copy(const g4_model_t *m, const void **p, size_t *n)
{
    if (!m->copy_base) return 0;
    *p = m->copy_base, *n = m->copy_bytes;
    return 1;
}

int g4_model_weights(const g4_model_t *m, int i, const void **p, size_t *n)
{
    if (i < 0 || i >= m->n_pf) return 0;
    *p = m->pf[i].t->data, *n = m->pf[i].n;
    return 1;
}
g4_gguf_t *g4_model_gguf(const g4_model_t *m) { return m->gguf; }
void g4_model_range(const g4_model_t *m, int *b, int *e)
{
    *b = m->begin;
    *e = m->end;
}

int g4_model_kv_imported(const g4_model_t *m, int l)
{
    if (l >= m->begin) return 0;
    for (int k = m->begin; k < m->end; k++)
        if (g4_model_kv_source(m, k) == l) return 1;
    return 0;
}

int g4_model_kv_exported(const g4_model_t *m, int l)
{
    if (l < m->begin || l >= m->end) return 0;
    for (int k = m->end; k < (int)m->hp.n_layer; k++)
        if (g4_model_kv_source(m, k) == l) return 1;
    return 0;
}

int g4_model_kv_source(const g4_model_t *m, int l)
{
    const g4_hparams_t *hp = &m->hp;
    if (l < (int)hp->n_layer_kv) return l;
    return hp->is_swa[l] ? (int)hp->n_layer_kv - 2 : (int)hp->n_layer_kv - 1;
}

int g4_model_is_eog(const g4_model_t *m, int32_t id)
{
    for (uint32_t i = 0; i < m->hp.n_eog; i++)
        if (m->hp.eog_ids[i] == id) return 1;
    return 0;
}

/* ====================================================================== */
/* context and sequences                                                  */
/* ====================================================================== */

typedef struct s_seq {
    int used;
    int n_past;        /* next position                                  */
    void **k, **v;     /* [n_layer] cache per own-KV layer in the range   */
} s_seq_t;

struct g4_ctx {
    g4_model_t *m;
    g4_ctx_params_t p;
    int n_ctx, n_ring;          /* cells of full / sliding caches          */
    size_t kv_elem;             /* 2 (f16) or 4 (f32)                      */
    s_seq_t *seqs;
    int *seq_rows;              /* rows of each sequence in the current batch */
    /* scratch for n_ubatch rows */
    float *x, *a, *q, *k, *v, *o, *t1, *fg, *fu, *ple, *tok_ple;
    float *moe_in, *moe_acc, *moe_g, *moe_d, *moe_probs;
    int32_t *moe_sel;
    float *moe_w;
    void *mm_scratch;
    size_t mm_scratch_bytes;
    /* per-thread attention buffers */
    int n_thr;
    uint8_t *attn_buf;
    size_t attn_buf_stride;
    float *rope_cs; /* [n_ubatch][hd_max] cos/sin cache */
    int32_t *row_hi; /* [n_ubatch] last position a row sees on sliding layers */
    void (*on_layer)(void *user); /* g4_ctx_on_layer */
    void *on_layer_user;
};

void g4_ctx_on_layer(g4_ctx_t *c, void (*fn)(void *user), void *user)
{
    c->on_layer = fn;
    c->on_layer_user = user;
}

static size_t s_kv_row(const g4_ctx_t *c, int l)
{
    const g4_hparams_t *hp = &c->m->hp;
    const size_t hd = hp->is_swa[l] ? hp->hd_swa : hp->hd_full;
    return (size_t)hp->n_head_kv[l] * hd * c->kv_elem;
}

static int s_cells(const g4_ctx_t *c, int l) { return c->m->hp.is_swa[l] ? c->n_ring : c->n_ctx; }

g4_ctx_t *g4_ctx_new(g4_model_t *m, const g4_ctx_params_t *pp, g4_err_t *err)
{
    const g4_hparams_t *hp = &m->hp;
    g4_ctx_t *c = g4_calloc(1, sizeof *c);
    if (!c) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->m = m;
    if (pp) c->p = *pp;
    if (c->p.n_ubatch <= 0) c->p.n_ubatch = 512;
    if (c->p.n_seq_max <= 0) c->p.n_seq_max = 8;
    c->n_ctx = c->p.n_ctx > 0 ? c->p.n_ctx : (hp->n_ctx_train < 4096 ? (int)hp->n_ctx_train : 4096);
    c->p.n_ctx = c->n_ctx;
    c->n_ring = (int)hp->n_swa + c->p.n_ubatch;
    if (c->n_ring > c->n_ctx) c->n_ring = c->n_ctx;
    c->kv_elem = c->p.kv_f32 ? 4 : 2;
    c->seqs = g4_calloc((size_t)c->p.n_seq_max, sizeof *c->seqs);
    c->seq_rows = g4_calloc((size_t)c->p.n_seq_max, sizeof *c->seq_rows);
    const size_t T = (size_t)c->p.n_ubatch, H = hp->n_embd;
    size_t hd_max = hp->hd_full > hp->hd_swa ? hp->hd_full : hp->hd_swa, nkv_max = 0, ff_max = 0;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        if (hp->n_head_kv[l] > nkv_max) nkv_max = hp->n_head_kv[l];
        if (hp->n_ff[l] > ff_max) ff_max = hp->n_ff[l];
    }
    const size_t nq = hp->n_head * hd_max, nkv = nkv_max * hd_max, PW = (size_t)hp->n_layer * hp->ple_dim;
    size_t kmax = H > nq ? H : nq;
    if (ff_max > kmax) kmax = ff_max;
    if (hp->n_ff_exp > kmax) kmax = hp->n_ff_exp;
    c->x = g4_malloc(T * H * 4);
    c->a = g4_malloc(T * H * 4);
    c->q = g4_malloc(T * nq * 4);
    c->k = g4_malloc(T * nkv * 4);
    c->v = g4_malloc(T * nkv * 4);
    c->o = g4_malloc(T * nq * 4);
    c->t1 = g4_malloc(T * H * 4);
    c->fg = g4_malloc(T * (ff_max ? ff_max : 1) * 4);
    c->fu = g4_malloc(T * (ff_max ? ff_max : 1) * 4);
    c->ple = g4_malloc(T * (PW ? PW : 1) * 4);
    c->tok_ple = g4_malloc((PW ? PW : 1) * 4);
    c->rope_cs = g4_malloc(T * hd_max * 4);
    c->row_hi = g4_malloc(T * sizeof *c->row_hi);
    if (hp->n_expert) {
        const size_t E = hp->n_expert, K = hp->n_expert_used, fe = hp->n_ff_exp;
        c->moe_in = g4_malloc(T * H * 4);
        c->moe_acc = g4_malloc(T * H * 4);
        c->moe_g = g4_malloc(T * 2 * fe * 4);
        c->moe_d = g4_malloc(T * H * 4);
        c->moe_probs = g4_malloc(T * E * 4);
        c->moe_sel = g4_malloc(T * K * sizeof(int32_t));
        c->moe_w = g4_malloc(T * K * 4);
    }
    c->mm_scratch_bytes = T * (kmax * 4 + 1024) + 4096;
    c->mm_scratch = g4_malloc_aligned(c->mm_scratch_bytes, 64);
    c->n_thr = omp_get_max_threads();
    /* scores of the query heads sharing a KV head (s_attn_f32) */
    uint32_t nkv_min = hp->n_head;
    for (uint32_t l = 0; l < hp->n_layer; l++)
        if (hp->n_head_kv[l] && hp->n_head_kv[l] < nkv_min) nkv_min = hp->n_head_kv[l];
    const size_t grp_max = nkv_min ? hp->n_head / nkv_min : 1;
    c->attn_buf_stride = (hd_max * 8 + (size_t)c->n_ctx * 4 * grp_max + 256 + 63) & ~(size_t)63;
    c->attn_buf = g4_malloc_aligned(c->attn_buf_stride * (size_t)c->n_thr, 64);
    if (!c->seqs || !c->seq_rows || !c->x || !c->a || !c->q || !c->k || !c->v || !c->o || !c->t1 || !c->fg || !c->fu || !c->ple ||
        !c->tok_ple || !c->rope_cs || !c->row_hi || !c->mm_scratch || !c->attn_buf ||
        (hp->n_expert && (!c->moe_in || !c->moe_acc || !c->moe_g || !c->moe_d || !c->moe_probs || !c->moe_sel ||
                          !c->moe_w))) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory allocating the context (%d rows)", c->p.n_ubatch);
        g4_ctx_destroy(&c);
        return NULL;
    }
    return c;
}

static void s_seq_free(g4_ctx_t *c, s_seq_t *s)
{
    if (s->k)
        for (uint32_t l = 0; l < c->m->hp.n_layer; l++) {
            g4_free(s->k[l]);
            g4_free(s->v[l]);
        }
    g4_free(s->k);
    g4_free(s->v);
    memset(s, 0, sizeof *s);
}

void g4_ctx_destroy(g4_ctx_t **pc)
{
    g4_ctx_t *c = pc ? *pc : NULL;
    if (!c) return;
    if (c->seqs)
        for (int i = 0; i < c->p.n_seq_max; i++) s_seq_free(c, &c->seqs[i]);
    g4_free(c->seqs);
    g4_free(c->seq_rows);
    float *bufs[] = {c->x, c->a, c->q, c->k, c->v, c->o, c->t1, c->fg, c->fu, c->ple, c->tok_ple,
                     c->rope_cs, c->moe_in, c->moe_acc, c->moe_g, c->moe_d, c->moe_probs, c->moe_w};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) g4_free(bufs[i]);
    g4_free(c->moe_sel);
    g4_free(c->row_hi);
    g4_free_aligned(c->mm_scratch);
    g4_free_aligned(c->attn_buf);
    g4_free(c);
    *pc = NULL;
}

static int s_seq_alloc(g4_ctx_t *c, s_seq_t *s, g4_err_t *err)
{
    const g4_hparams_t *hp = &c->m->hp;
    s->k = g4_calloc(hp->n_layer, sizeof(void *));
    s->v = g4_calloc(hp->n_layer, sizeof(void *));
    if (!s->k || !s->v) goto nomem;
    for (int l = 0; l < c->m->end; l++) {
        if (l >= (int)hp->n_layer_kv) continue;
        if (l < c->m->begin && !g4_model_kv_imported(c->m, l)) continue;
        const size_t bytes = s_kv_row(c, l) * (size_t)s_cells(c, l);
        s->k[l] = g4_calloc(1, bytes);
        s->v[l] = g4_calloc(1, bytes);
        if (!s->k[l] || !s->v[l]) goto nomem;
    }
    s->used = 1;
    return G4_OK;
nomem:
    s_seq_free(c, s);
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

static s_seq_t *s_seq(g4_ctx_t *c, int id)
{
    if (id < 0 || id >= c->p.n_seq_max || !c->seqs[id].used) return NULL;
    return &c->seqs[id];
}

int g4_seq_fork(g4_ctx_t *c, int src, g4_err_t *err)
{
    s_seq_t *s = s_seq(c, src);
    if (!s) return g4_err_set(err, G4_ERR_RANGE, "no sequence %d", src);
    int id = g4_seq_new(c, err);
    if (id < 0) return id;
    s_seq_t *d = &c->seqs[id];
    for (int l = c->m->begin; l < c->m->end; l++) {
        if (!s->k[l]) continue;
        const size_t bytes = s_kv_row(c, l) * (size_t)s_cells(c, l);
        memcpy(d->k[l], s->k[l], bytes);
        memcpy(d->v[l], s->v[l], bytes);
    }
    d->n_past = s->n_past;
    return id;
}

int g4_seq_truncate(g4_ctx_t *c, int id, int n_keep, g4_err_t *err)
{
    s_seq_t *s = s_seq(c, id);
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
    return G4_OK;
}

void g4_seq_release(g4_ctx_t *c, int id)
{
    s_seq_t *s = s_seq(c, id);
    if (s) s_seq_free(c, s);
}

int g4_seq_n_past(const g4_ctx_t *c, int id)
{
    if (id < 0 || id >= c->p.n_seq_max || !c->seqs[id].used) return -1;
    return c->seqs[id].n_past;
}

/* ====================================================================== */
/* attention                                                              */
/* ====================================================================== */

/* One query row against the visible cells of its sequence, single-query
 * flash-attention kernel of ggml's CPU backend: Q rounded to F16, f16·f16
 * scores accumulated in f32, cells visited in position order, online softmax
 * with the running Σ softmax·V kept in an F16 buffer. */
static void s_attn_f16(const float *q, const uint8_t *K, const uint8_t *V, size_t row_bytes, int hd, int lo, int hi,
                       int cells, float *out, uint8_t *buf)
{
    const g4_type_ops_t *f16 = g4_type_ops(G4_DTYPE_F16);
    g4_fp16_t *qh = (g4_fp16_t *)buf, *acc = qh + hd;
    f16->from_float(q, qh, hd);
    memset(acc, 0, (size_t)hd * 2);
    float S = 0.0f, M = -INFINITY;
    for (int p = lo; p <= hi; p++) {
        const int cell = p % cells;
        float s;
        f16->vec_dot(hd, &s, K + (size_t)cell * row_bytes, qh);
        const g4_fp16_t *v = (const g4_fp16_t *)(V + (size_t)cell * row_bytes);
        float ms = 1.0f, vs = 1.0f;
        if (s > M) {
            const float Mold = M;
            M = s;
            ms = expf(Mold - M);
            g4_f16_scale(acc, ms, hd);
        } else {
            vs = expf(s - M);
        }
        g4_f16_mad(acc, v, vs, hd);
        S = S * ms + vs;
    }
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    for (int d = 0; d < hd; d++) out[d] = g4_fp16_to_fp32(acc[d]) * inv;
}

/* f32 attention: the tiled kernel's arithmetic (used for ubatches of >= 64
 * rows and for an F32 cache), for the G query heads that share a KV head (q,
 * out: G rows of hd): each K and V row is read once for all of them (F16:
 * converted once, the dot products side by side), and every head gets the
 * bits it gets alone. buf holds G * (hi - lo + 1) scores. */
#define S_ATTN_GMAX 64
static void s_attn_f32(const float *q, int G, const uint8_t *K, const uint8_t *V, size_t row_bytes, int is_f16, int hd,
                       int lo, int hi, int cells, float *out, uint8_t *buf)
{
    const int np = hi - lo + 1;
    float *sc = (float *)buf, M[S_ATTN_GMAX], S[S_ATTN_GMAX], w[S_ATTN_GMAX];
    for (int g = 0; g < G; g++) M[g] = -INFINITY, S[g] = 0;
    for (int p = lo; p <= hi; p++) {
        const uint8_t *kr = K + (size_t)(p % cells) * row_bytes;
        if (is_f16) g4_dot_f16_f32_g((const uint16_t *)kr, q, hd, G, w, hd);
        else
            for (int g = 0; g < G; g++) w[g] = g4_dot_f32_f32((const float *)kr, q + (size_t)g * hd, hd);
        for (int g = 0; g < G; g++) {
            sc[(size_t)g * np + (p - lo)] = w[g];
            if (w[g] > M[g]) M[g] = w[g];
        }
    }
    for (int g = 0; g < G; g++) {
        float *sg = sc + (size_t)g * np;
        for (int p = 0; p < np; p++) {
            sg[p] = expf(sg[p] - M[g]);
            S[g] += sg[p];
        }
    }
    memset(out, 0, (size_t)G * hd * sizeof *out);
    for (int p = lo; p <= hi; p++) {
        const uint8_t *vr = V + (size_t)(p % cells) * row_bytes;
        for (int g = 0; g < G; g++) w[g] = sc[(size_t)g * np + (p - lo)];
        if (is_f16) g4_axpy_f16_g(out, hd, w, G, (const uint16_t *)vr, hd);
        else
            for (int g = 0; g < G; g++) g4_axpy_f32(out + (size_t)g * hd, w[g], (const float *)vr, hd);
    }
    for (int g = 0; g < G; g++) {
        const float inv = S[g] == 0.0f ? 0.0f : 1.0f / S[g];
        for (int d = 0; d < hd; d++) out[(size_t)g * hd + d] *= inv;
    }
}

/* ====================================================================== */
/* forward                                                                */
/* ====================================================================== */

static int s_mm(g4_ctx_t *c, const g4_tensor_t *W, int64_t row0, int64_t nrows, const float *X, int64_t ldx,
                int64_t T, float *Y, int64_t ldy)
{
    return g4_matmul(W, row0, nrows, X, ldx, T, Y, ldy, c->mm_scratch);
}

static void s_store_kv(g4_ctx_t *c, void *cache, int cells, const float *src, int64_t n, int pos)
{
    uint8_t *dst = (uint8_t *)cache + (size_t)(pos % cells) * (size_t)n * c->kv_elem;
    if (c->kv_elem == 2) {
        g4_fp16_t *h = (g4_fp16_t *)dst;
        for (int64_t i = 0; i < n; i++) h[i] = g4_fp32_to_fp16(src[i]);
    } else {
        memcpy(dst, src, (size_t)n * 4);
    }
}

static void s_moe(g4_ctx_t *c, const s_layer_t *L, int T, const float *h1, float *out)
{
    const g4_hparams_t *hp = &c->m->hp;
    const int H = (int)hp->n_embd, E = (int)hp->n_expert, K = (int)hp->n_expert_used, fe = (int)hp->n_ff_exp;
    const float inv_sqrt_h = 1.0f / sqrtf((float)H);
    /* router on h1 (weightless rms, 1/sqrt(H), learned scale) */
    for (int t = 0; t < T; t++) {
        float *r = c->a + (size_t)t * H;
        g4_rmsnorm(h1 + (size_t)t * H, NULL, r, H, hp->eps);
        for (int i = 0; i < H; i++) r[i] = (r[i] * inv_sqrt_h) * L->gate_inp_scale[i];
    }
    s_mm(c, &L->gate_inp, 0, -1, c->a, H, T, c->moe_probs, E);
    for (int t = 0; t < T; t++) {
        float *pr = c->moe_probs + (size_t)t * E;
        g4_softmax(pr, E);
        int32_t *sel = c->moe_sel + (size_t)t * K;
        float *w = c->moe_w + (size_t)t * K, sum = 0;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int j = 0; j < k; j++) taken |= sel[j] == e;
                if (!taken && (best < 0 || pr[e] > pr[best])) best = e;
            }
            sel[k] = best;
            w[k] = pr[best];
            sum += w[k];
        }
        if (sum < 6.103515625e-5f) sum = 6.103515625e-5f;
        for (int k = 0; k < K; k++) w[k] /= sum;
    }
    /* experts: input e_in = rms(h1)·pre_ffw_norm_2, grouped by expert */
    for (int t = 0; t < T; t++) g4_rmsnorm(h1 + (size_t)t * H, L->pre_ffw_norm_2, c->moe_in + (size_t)t * H, H, hp->eps);
    /* per token, accumulate expert outputs in selection order */
    float *acc = c->moe_acc;
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < K; k++) {
            const int e = c->moe_sel[t * K + k];
            const float *xin = c->moe_in + (size_t)t * H;
            float *g = c->moe_g, *u = c->moe_g + fe;
            if (L->fused_gate_up) {
                s_mm(c, &L->gate_up_exps, (int64_t)e * 2 * fe, 2 * fe, xin, H, 1, g, 2 * fe);
            } else {
                s_mm(c, &L->gate_exps, (int64_t)e * fe, fe, xin, H, 1, g, fe);
                s_mm(c, &L->up_exps, (int64_t)e * fe, fe, xin, H, 1, u, fe);
            }
            g4_geglu(g, u, g, fe);
            float *d = c->moe_d;
            s_mm(c, &L->down_exps, (int64_t)e * H, H, g, fe, 1, d, H);
            const float es = L->down_exps_scale ? L->down_exps_scale[e] : 1.0f, wk = c->moe_w[t * K + k];
            float *o = acc + (size_t)t * H;
            for (int i = 0; i < H; i++) {
                float vv = d[i];
                if (L->down_exps_scale) vv *= es;
                vv *= wk;
                o[i] = k == 0 ? vv : o[i] + vv;
            }
        }
    }
    /* out may alias moe_in: every expert input has been consumed */
    for (int t = 0; t < T; t++) g4_rmsnorm(acc + (size_t)t * H, L->post_ffw_norm_2, out + (size_t)t * H, H, hp->eps);
}

static int s_layer(g4_ctx_t *c, int l, const g4_batch_t *b, int T)
{
    const g4_model_t *m = c->m;
    const g4_hparams_t *hp = &m->hp;
    const s_layer_t *L = &m->layers[l];
    const int H = (int)hp->n_embd, swa = hp->is_swa[l];
    const int hd = (int)(swa ? hp->hd_swa : hp->hd_full), nh = (int)hp->n_head, nkv = (int)hp->n_head_kv[l];
    const int n_rot = (int)(swa ? hp->n_rot_swa : hp->n_rot_full);
    const float base = swa ? hp->rope_base_swa : hp->rope_base_full;
    const float *ff = swa ? NULL : m->rope_freqs;
    const int nq = nh * hd, nkvd = nkv * hd;
    float *x = c->x, *a = c->a;

    for (int t = 0; t < T; t++) g4_rmsnorm(x + (size_t)t * H, L->attn_norm, a + (size_t)t * H, H, hp->eps);
    s_mm(c, &L->wq, 0, -1, a, H, T, c->q, nq);
    for (int t = 0; t < T; t++) g4_rope_cache(c->rope_cs + (size_t)t * hd, b->pos[t], hd, n_rot, base, ff);
    for (int t = 0; t < T; t++) {
        float *qt = c->q + (size_t)t * nq;
        for (int h = 0; h < nh; h++) g4_rmsnorm(qt + h * hd, L->q_norm, qt + h * hd, hd, hp->eps);
        g4_rope_apply(qt, nh, hd, n_rot, c->rope_cs + (size_t)t * hd);
    }
    const int src = g4_model_kv_source(m, l);
    if (src == l) {
        s_mm(c, &L->wk, 0, -1, a, H, T, c->k, nkvd);
        if (L->has_wv) s_mm(c, &L->wv, 0, -1, a, H, T, c->v, nkvd);
        else memcpy(c->v, c->k, (size_t)T * nkvd * 4); /* K = V: the raw projection */
        for (int t = 0; t < T; t++) {
            float *kt = c->k + (size_t)t * nkvd, *vt = c->v + (size_t)t * nkvd;
            for (int h = 0; h < nkv; h++) {
                g4_rmsnorm(kt + h * hd, L->k_norm, kt + h * hd, hd, hp->eps);
                g4_rmsnorm(vt + h * hd, NULL, vt + h * hd, hd, hp->eps);
            }
            g4_rope_apply(kt, nkv, hd, n_rot, c->rope_cs + (size_t)t * hd);
            s_seq_t *s = &c->seqs[b->seq[t]];
            s_store_kv(c, s->k[l], s_cells(c, l), kt, nkvd, b->pos[t]);
            s_store_kv(c, s->v[l], s_cells(c, l), vt, nkvd, b->pos[t]);
        }
    }
    /* attention */
    /* llama.cpp picks its attention kernel by the rows in the batch; g4 picks
     * it per sequence (its own rows), so a sequence computes the same numbers
     * whatever other sequences share the batch */
    const int cells = s_cells(c, src);
    for (int t = 0; t < T; t++) c->seq_rows[b->seq[t]] = 0;
    for (int t = 0; t < T; t++) c->seq_rows[b->seq[t]]++;
    const size_t row_bytes = s_kv_row(c, src);
    const int grp = nh / nkv;
    /* when every row takes the f32 path (long runs of a sequence, or an F32
     * cache) an item is the G query heads of one KV head; otherwise (decode)
     * one head, so the items spread over more threads */
    int G = grp <= S_ATTN_GMAX ? grp : 1;
    for (int t = 0; t < T && G > 1; t++)
        if (c->kv_elem == 2 && c->seq_rows[b->seq[t]] < 64) G = 1;
    const int nhg = nh / G;
#pragma omp parallel for schedule(dynamic, 1) num_threads(T * nhg > 1 ? g4_kernels_threads() : 1)
    for (int i = 0; i < T * nhg; i++) {
        const int t = i / nhg, h = (i % nhg) * G, kh = h / grp;
        const s_seq_t *s = &c->seqs[b->seq[t]];
        const int p1 = b->pos[t], hi = swa ? c->row_hi[t] : p1;
        const int lo = swa ? (p1 - (int)hp->n_swa + 1 > 0 ? p1 - (int)hp->n_swa + 1 : 0) : 0;
        const uint8_t *K = (const uint8_t *)s->k[src] + (size_t)kh * hd * c->kv_elem;
        const uint8_t *V = (const uint8_t *)s->v[src] + (size_t)kh * hd * c->kv_elem;
        uint8_t *buf = c->attn_buf + c->attn_buf_stride * (size_t)omp_get_thread_num();
        const float *qv = c->q + (size_t)t * nq + (size_t)h * hd;
        float *out = c->o + (size_t)t * nq + (size_t)h * hd;
        if (c->kv_elem == 2 && c->seq_rows[b->seq[t]] < 64) s_attn_f16(qv, K, V, row_bytes, hd, lo, hi, cells, out, buf);
        else s_attn_f32(qv, G, K, V, row_bytes, c->kv_elem == 2, hd, lo, hi, cells, out, buf);
    }
    s_mm(c, &L->wo, 0, -1, c->o, nq, T, c->t1, H);
    for (int t = 0; t < T; t++) {
        float *r = c->t1 + (size_t)t * H, *xt = x + (size_t)t * H;
        g4_rmsnorm(r, L->post_attn_norm, r, H, hp->eps);
        for (int i = 0; i < H; i++) xt[i] += r[i]; /* x is now h1 */
    }
    /* feed-forward */
    const int ff_n = (int)hp->n_ff[l];
    for (int t = 0; t < T; t++) g4_rmsnorm(x + (size_t)t * H, L->ffn_norm, a + (size_t)t * H, H, hp->eps);
    s_mm(c, &L->gate, 0, -1, a, H, T, c->fg, ff_n);
    s_mm(c, &L->up, 0, -1, a, H, T, c->fu, ff_n);
    g4_geglu(c->fg, c->fu, c->fg, (int64_t)T * ff_n);
    s_mm(c, &L->down, 0, -1, c->fg, ff_n, T, c->t1, H);
    if (hp->n_expert) {
        for (int t = 0; t < T; t++) g4_rmsnorm(c->t1 + (size_t)t * H, L->post_ffw_norm_1, c->t1 + (size_t)t * H, H, hp->eps);
        s_moe(c, L, T, x, c->moe_in); /* f2 = rms(Σ experts)·post_ffw_norm_2 */
    }
    for (int t = 0; t < T; t++) {
        float *f = c->t1 + (size_t)t * H, *xt = x + (size_t)t * H;
        if (hp->n_expert) {
            const float *f2 = c->moe_in + (size_t)t * H;
            for (int i = 0; i < H; i++) f[i] = f[i] + f2[i];
        }
        g4_rmsnorm(f, L->post_ffw_norm, f, H, hp->eps);
        for (int i = 0; i < H; i++) xt[i] += f[i];
    }
    /* per-layer input (E models) */
    if (hp->ple_dim) {
        const int D = (int)hp->ple_dim, PW = (int)hp->n_layer * D;
        s_mm(c, &L->inp_gate, 0, -1, x, H, T, c->fg, D);
        g4_gelu(c->fg, c->fg, (int64_t)T * D);
        for (int t = 0; t < T; t++) {
            float *g = c->fg + (size_t)t * D;
            const float *pl = c->ple + (size_t)t * PW + (size_t)l * D;
            for (int i = 0; i < D; i++) g[i] *= pl[i];
        }
        s_mm(c, &L->proj, 0, -1, c->fg, D, T, c->t1, H);
        for (int t = 0; t < T; t++) {
            float *r = c->t1 + (size_t)t * H, *xt = x + (size_t)t * H;
            g4_rmsnorm(r, L->post_norm, r, H, hp->eps);
            for (int i = 0; i < H; i++) xt[i] += r[i];
        }
    }
    if (L->has_out_scale)
        for (size_t i = 0; i < (size_t)T * H; i++) x[i] *= L->out_scale;
    return G4_OK;
}

static void s_embed(g4_ctx_t *c, const g4_batch_t *b, int T)
{
    const g4_model_t *m = c->m;
    const g4_hparams_t *hp = &m->hp;
    const int H = (int)hp->n_embd;
    const float scale = sqrtf((float)H);
    for (int t = 0, k = 0; t < T; t++) {
        float *xt = c->x + (size_t)t * H;
        if (b->embd && (!b->flags || (b->flags[t] & G4_ROW_EMBD))) {
            memcpy(xt, b->embd + (size_t)(k++) * H, (size_t)H * 4); /* soft-token rows in order */
        } else {
            g4_dequant_row(m->tok_embd.dtype, g4_tensor_row(&m->tok_embd, b->tokens[t]), xt, H);
            for (int i = 0; i < H; i++) xt[i] *= scale;
        }
    }
    if (!hp->ple_dim) return;
    const int D = (int)hp->ple_dim, PW = (int)hp->n_layer * D;
    const float sD = sqrtf((float)D), inv_h = 1.0f / sqrtf((float)H), inv_2 = 1.0f / sqrtf(2.0f);
    s_mm(c, &m->ple_proj, 0, -1, c->x, H, T, c->ple, PW);
    for (int t = 0; t < T; t++) {
        float *p = c->ple + (size_t)t * PW;
        const int32_t id = b->embd && (!b->flags || (b->flags[t] & G4_ROW_EMBD)) ? 0 : b->tokens[t];
        g4_dequant_row(m->ple_tok_embd.dtype, g4_tensor_row(&m->ple_tok_embd, id), c->tok_ple, PW);
        for (int i = 0; i < PW; i++) p[i] *= inv_h;
        for (int l = 0; l < (int)hp->n_layer; l++) g4_rmsnorm(p + l * D, m->ple_proj_norm, p + l * D, D, hp->eps);
        for (int i = 0; i < PW; i++) p[i] = (p[i] + c->tok_ple[i] * sD) * inv_2;
    }
}

int g4_ctx_forward(g4_ctx_t *c, const g4_batch_t *b, const float *hidden_in, float *ple_io, float *hidden_out,
                   float *logits, g4_err_t *err)
{
    const g4_model_t *m = c->m;
    const g4_hparams_t *hp = &m->hp;
    const int H = (int)hp->n_embd, PW = (int)(hp->n_layer * hp->ple_dim);
    if (b->n <= 0) return G4_OK;
    s_adopt(c->m);
    if (b->n > c->p.n_ubatch) {
        /* split into ubatches, keeping logits in row order */
        int done = 0, n_out = 0;
        while (done < b->n) {
            const int n = b->n - done < c->p.n_ubatch ? b->n - done : c->p.n_ubatch;
            int e_done = done; /* soft-token rows before this piece */
            if (b->flags) {
                e_done = 0;
                for (int i = 0; i < done; i++) e_done += (b->flags[i] & G4_ROW_EMBD) != 0;
            }
            g4_batch_t sub = {n, b->tokens ? b->tokens + done : NULL, b->embd ? b->embd + (size_t)e_done * H : NULL,
                              b->pos + done, b->seq + done, b->want_logits ? b->want_logits + done : NULL,
                              b->flags ? b->flags + done : NULL};
            int rc = g4_ctx_forward(c, &sub, hidden_in ? hidden_in + (size_t)done * H : NULL,
                                    ple_io ? ple_io + (size_t)done * PW : NULL,
                                    hidden_out ? hidden_out + (size_t)done * H : NULL,
                                    logits ? logits + (size_t)n_out * hp->n_vocab : NULL, err);
            if (rc) return rc;
            for (int i = 0; i < n; i++) n_out += !sub.want_logits || sub.want_logits[i];
            done += n;
        }
        return G4_OK;
    }
    const int T = b->n;
    /* validate rows: known sequences, positions continue each sequence in order */
    for (int t = 0; t < T; t++) {
        s_seq_t *s = s_seq(c, b->seq[t]);
        if (!s) return g4_err_set(err, G4_ERR_RANGE, "row %d: no sequence %d", t, b->seq[t]);
        const int is_embd = b->embd && (!b->flags || (b->flags[t] & G4_ROW_EMBD));
        if (!is_embd && m->begin == 0 && (b->tokens[t] < 0 || (uint32_t)b->tokens[t] >= hp->n_vocab))
            return g4_err_set(err, G4_ERR_RANGE, "row %d: token id %d is outside the vocabulary (%u)", t, b->tokens[t],
                              hp->n_vocab);
        int expect = s->n_past;
        for (int u = 0; u < t; u++) expect += b->seq[u] == b->seq[t];
        if (b->pos[t] != expect)
            return g4_err_set(err, G4_ERR_RANGE, "row %d: position %d does not continue sequence %d (next is %d)", t,
                              b->pos[t], b->seq[t], expect);
        if (b->pos[t] >= c->n_ctx)
            return g4_err_set(err, G4_ERR_RANGE, "sequence %d is full (%d positions)", b->seq[t], c->n_ctx);
    }
    /* last position each row sees: itself, or the end of its run of
     * bidirectional rows (same sequence, consecutive positions) */
    for (int t = T - 1; t >= 0; t--) {
        c->row_hi[t] = b->pos[t];
        if (b->flags && (b->flags[t] & G4_ROW_BIDIR) && t + 1 < T && (b->flags[t + 1] & G4_ROW_BIDIR) &&
            b->seq[t + 1] == b->seq[t] && b->pos[t + 1] == b->pos[t] + 1)
            c->row_hi[t] = c->row_hi[t + 1];
    }
    if (m->begin == 0) {
        s_embed(c, b, T);
        if (ple_io && PW) memcpy(ple_io, c->ple, (size_t)T * PW * 4);
    } else {
        if (!hidden_in) return g4_err_set(err, G4_ERR_RANGE, "layers from %d need hidden states as input", m->begin);
        memcpy(c->x, hidden_in, (size_t)T * H * 4);
        if (PW) {
            if (!ple_io) return g4_err_set(err, G4_ERR_RANGE, "layers from %d need per-layer inputs", m->begin);
            memcpy(c->ple, ple_io, (size_t)T * PW * 4);
        }
    }
    for (int l = m->begin; l < m->end; l++) {
        s_layer(c, l, b, T);
        if (c->on_layer) c->on_layer(c->on_layer_user);
    }
    for (int t = 0; t < T; t++) {
        s_seq_t *s = &c->seqs[b->seq[t]];
        if (b->pos[t] + 1 > s->n_past) s->n_past = b->pos[t] + 1;
    }
    if (m->end < (int)hp->n_layer) {
        if (!hidden_out) return g4_err_set(err, G4_ERR_RANGE, "layers up to %d must hand on hidden states", m->end);
        memcpy(hidden_out, c->x, (size_t)T * H * 4);
        return G4_OK;
    }
    if (hidden_out) memcpy(hidden_out, c->x, (size_t)T * H * 4);
    if (!logits) return G4_OK;
    int n_out = 0;
    for (int t = 0; t < T; t++) {
        if (b->want_logits && !b->want_logits[t]) continue;
        g4_rmsnorm(c->x + (size_t)t * H, m->output_norm, c->a + (size_t)n_out * H, H, hp->eps);
        n_out++;
    }
    s_mm(c, &m->output, 0, -1, c->a, H, n_out, logits, hp->n_vocab);
    if (hp->softcap > 0) g4_softcap(logits, (int64_t)n_out * hp->n_vocab, hp->softcap);
    return G4_OK;
}

int g4_ctx_n_ctx(const g4_ctx_t *c) { return c->n_ctx; }

/* ---- K/V rows between stages ---------------------------------------------------------- */

/* A section: int32 layer, int32 rows, int32 row_bytes, then per row the K row
 * and the V row exactly as the cache holds them (F16 or F32). */
size_t g4_ctx_kv_export_bytes(const g4_ctx_t *c, int n_rows)
{
    size_t n = 0;
    for (int l = c->m->begin; l < c->m->end; l++)
        if (g4_model_kv_exported(c->m, l)) n += 12 + (size_t)n_rows * 2 * s_kv_row(c, l);
    return n;
}

size_t g4_ctx_kv_export(const g4_ctx_t *c, const g4_batch_t *b, void *out)
{
    uint8_t *o = out;
    for (int l = c->m->begin; l < c->m->end; l++) {
        if (!g4_model_kv_exported(c->m, l)) continue;
        const int32_t hdr[3] = {l, b->n, (int32_t)s_kv_row(c, l)};
        memcpy(o, hdr, 12);
        o += 12;
        const size_t rb = s_kv_row(c, l);
        const int cells = s_cells(c, l);
        for (int t = 0; t < b->n; t++) {
            const s_seq_t *s = &c->seqs[b->seq[t]];
            memcpy(o, (const uint8_t *)s->k[l] + (size_t)(b->pos[t] % cells) * rb, rb), o += rb;
            memcpy(o, (const uint8_t *)s->v[l] + (size_t)(b->pos[t] % cells) * rb, rb), o += rb;
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
        const size_t rb = s_kv_row(c, l);
        if ((size_t)hdr[2] != rb) return g4_err_set(err, G4_ERR_PROTO, "K/V rows of %d bytes for layer %d, want %zu", hdr[2], l, rb);
        if ((size_t)(end - p) < (size_t)b->n * 2 * rb) return g4_err_set(err, G4_ERR_PROTO, "truncated K/V section");
        if (!g4_model_kv_imported(c->m, l)) { /* another stage's: skip */
            p += (size_t)b->n * 2 * rb;
            continue;
        }
        const int cells = s_cells(c, l);
        for (int t = 0; t < b->n; t++) {
            s_seq_t *s = &c->seqs[b->seq[t]];
            memcpy((uint8_t *)s->k[l] + (size_t)(b->pos[t] % cells) * rb, p, rb), p += rb;
            memcpy((uint8_t *)s->v[l] + (size_t)(b->pos[t] % cells) * rb, p, rb), p += rb;
        }
        got++;
    }
    if (got < needed) return g4_err_set(err, G4_ERR_PROTO, "%d K/V source layer(s) from earlier stages missing", needed - got);
    return G4_OK;
}

/* ---- media placeholders ------------------------------------------------------ */

int g4_media_check(const int32_t *ids, int n, const int32_t mid[6], const int *kind, int n_media, g4_err_t *err)
{
    int n_img = 0, n_aud = 0, p_img = 0, p_aud = 0;
    for (int i = 0; i < n_media; i++) n_img += kind[i] == G4_MEDIA_IMAGE, n_aud += kind[i] == G4_MEDIA_AUDIO;
    for (int p = 0; p < n; p++) {
        p_img += mid[0] >= 0 && ids[p] == mid[0];
        p_aud += mid[3] >= 0 && ids[p] == mid[3];
    }
    if ((n_img && (mid[1] < 0 || mid[2] < 0)) || (n_aud && (mid[4] < 0 || mid[5] < 0)))
        return g4_err_set(err, G4_ERR_RANGE, "the vocabulary has no <|image> / <|audio> brackets for media");
    if (p_img != n_img || p_aud != n_aud || n_img + n_aud != n_media)
        return g4_err_set(err, G4_ERR_RANGE,
                          "the prompt has %d <|image|> and %d <|audio|> placeholders for %d image(s) and %d audio clip(s)",
                          p_img, p_aud, n_img, n_aud);
    return G4_OK;
}

int g4_media_splice(const int32_t *ids, int n, const int32_t mid[6], const int *kind, const int *n_tok, int n_media,
                    int bidir, int32_t *out, int8_t *flags, int *order, g4_err_t *err)
{
    int rc = g4_media_check(ids, n, mid, kind, n_media, err);
    if (rc) return rc;
    int k = 0, j = 0, next[3] = {0, 0, 0};
    for (int p = 0; p < n; p++) {
        const int kd = mid[0] >= 0 && ids[p] == mid[0] ? G4_MEDIA_IMAGE : mid[3] >= 0 && ids[p] == mid[3] ? G4_MEDIA_AUDIO : 0;
        if (!kd) {
            flags[k] = 0;
            out[k++] = ids[p];
            continue;
        }
        int mi = next[kd];
        while (kind[mi] != kd) mi++; /* exists: the counts matched */
        next[kd] = mi + 1;
        order[j++] = mi;
        const int8_t f = G4_ROW_EMBD | (kd == G4_MEDIA_IMAGE && bidir ? G4_ROW_BIDIR : 0);
        flags[k] = 0;
        out[k++] = kd == G4_MEDIA_IMAGE ? mid[1] : mid[4];
        for (int t = 0; t < n_tok[mi]; t++) flags[k] = f, out[k++] = -1;
        flags[k] = 0;
        out[k++] = kd == G4_MEDIA_IMAGE ? mid[2] : mid[5];
    }
    return k;
}
