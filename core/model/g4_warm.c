/* g4_warm — readying a loaded model's weights in the background
 * (g4_model_warm), and the ranges shardd binds to its NUMA node.
 * Not the loading itself (g4_model.c) nor any computation: the forward pass
 * only calls g4_warm_adopt between passes. */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_log.h"
#include "g4_model_internal.h"
#include "g4_pack.h"

/* A matrix is read whole on every forward pass: note it for g4_model_warm. */
void g4_warm_note(g4_model_t *m, const g4_tensor_t *t)
{
    if (!t->data || t->n_dims < 2) return;
    if (m->n_pf == m->cap_pf) {
        const int cap = m->cap_pf ? 2 * m->cap_pf : 32;
        g4_weight_range_t *r = g4_realloc(m->pf, (size_t)cap * sizeof *r);
        if (!r) return; /* prefaulting is an optimisation only */
        m->pf = r, m->cap_pf = cap;
    }
    g4_weight_range_t *r = &m->pf[m->n_pf++];
    r->p = t->data, r->n = (size_t)(t->nb[3] * (uint64_t)t->ne[3]), r->t = t;
    atomic_init(&r->copy, NULL);
    r->packed = 0;
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

/* A layer's matrix, of a type with packed kernels, whole groups of rows,
 * read by nothing but g4_matmul: the copy is packed (g4_pack.h). Not the LM
 * head nor the embeddings (rows are looked up in them). */
static int s_packable(const g4_model_t *m, const g4_weight_range_t *r)
{
    const g4_tensor_t *t = r->t;
    const char *p = (const char *)t;
    if (getenv("G4_NO_PACK") || m->end <= m->begin) return 0;
    if (p < (const char *)&m->layers[m->begin] || p >= (const char *)&m->layers[m->end]) return 0;
    const int64_t N = g4_tensor_nrows(t);
    return g4_pack_able(t->dtype, t->ne[0], N) && t->nb[1] == g4_dtype_row_bytes(t->dtype, (uint64_t)t->ne[0]) &&
           r->n == (size_t)N * t->nb[1];
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
        const size_t n = m->pf[i].n;
        const g4_tensor_t *t = m->pf[i].t;
        const int pack = s_packable(m, &m->pf[i]);
        const size_t group = pack ? (size_t)G4_PACK_ROWS * t->nb[1] : 1;
        /* 8 MiB at a time; packed: whole groups of rows */
        const size_t chunk = ((size_t)8 << 20) / group > 0 ? ((size_t)8 << 20) / group * group : group;
        off += (n + 63) & ~(size_t)63;
        size_t k = 0;
        for (; k < n && !atomic_load(&m->pf_stop); k += chunk) {
            const size_t c = n - k < chunk ? n - k : chunk;
            /* faulting a range in at once is several times faster than a
             * first write per page (and gets huge pages where the kernel
             * has them); a chunk at a time holds the mmap lock briefly */
            (void)madvise(dst + k, c, MADV_POPULATE_WRITE);
            if (pack)
                g4_pack_rows(t->dtype, t->ne[0], m->pf[i].p + k, t->nb[1], (int64_t)(c / group), dst + k);
            else
                memcpy(dst + k, m->pf[i].p + k, c);
            /* the process keeps one copy resident, not two (a pass still
             * reading the file's pages faults them back in from the cache) */
            s_drop_pages(m->pf[i].p + k, c);
        }
        m->pf[i].packed = pack;
        if (k >= n) atomic_store_explicit(&m->pf[i].copy, dst, memory_order_release);
    }
    /* the per-layer embedding table is only looked up (a row per token), so
     * it stays the file's mapping; mapped in last, so that a long prompt does
     * not wait on a page fault per row and the process holds what g4 plan
     * counts for it */
    if (m->ple_tok_embd.data && m->begin == 0 && !atomic_load(&m->pf_stop))
        s_populate(m, m->ple_tok_embd.data,
                   (size_t)(m->ple_tok_embd.nb[3] * (uint64_t)m->ple_tok_embd.ne[3]), &have_madv);
    m->warm_ns = g4_clock_mono_ns() - t0;
    if (m->mode == G4_WEIGHTS_COPY) {
        int np = 0;
        for (int i = 0; i < m->n_pf; i++) np += m->pf[i].packed;
        g4_log_debug("model", "weights copied in %.0f ms: %d of %d matrices packed for the VNNI kernels",
                     (double)m->warm_ns / 1e6, np, m->n_pf);
    }
    atomic_store(&m->pf_done, 1);
    return NULL;
}

/* every matrix of the model, for repointing them at a copy */
static void s_repoint(g4_model_t *m, const uint8_t *from, const uint8_t *to, int packed)
{
    static const size_t lt[] = {offsetof(g4_layer_t, wq),           offsetof(g4_layer_t, wk),
                                offsetof(g4_layer_t, wv),           offsetof(g4_layer_t, wo),
                                offsetof(g4_layer_t, gate),         offsetof(g4_layer_t, up),
                                offsetof(g4_layer_t, down),         offsetof(g4_layer_t, gate_inp),
                                offsetof(g4_layer_t, gate_up_exps), offsetof(g4_layer_t, gate_exps),
                                offsetof(g4_layer_t, up_exps),      offsetof(g4_layer_t, down_exps),
                                offsetof(g4_layer_t, inp_gate),     offsetof(g4_layer_t, proj)};
    g4_tensor_t *top[] = {&m->tok_embd, &m->output, &m->ple_tok_embd, &m->ple_proj};
    for (size_t k = 0; k < sizeof top / sizeof *top; k++)
        if (top[k]->data == from) top[k]->data = (void *)to, top[k]->packed = packed;
    for (int l = m->begin; l < m->end; l++)
        for (size_t k = 0; k < sizeof lt / sizeof *lt; k++) {
            g4_tensor_t *t = (g4_tensor_t *)((char *)&m->layers[l] + lt[k]);
            if (t->data == from) t->data = (void *)to, t->packed = packed;
        }
}

/* Between forward passes: point the tensors at the copies finished so far
 * and give the file's pages of those ranges back (a private read-only file
 * mapping: the page cache keeps them; touching one again would just fault
 * it back in). */
void g4_warm_adopt(g4_model_t *m)
{
    if (m->mode != G4_WEIGHTS_COPY || m->n_adopted == m->n_pf) return;
    pthread_mutex_lock(&m->adopt_mu);
    while (m->n_adopted < m->n_pf) {
        g4_weight_range_t *r = &m->pf[m->n_adopted];
        const uint8_t *c = atomic_load_explicit(&r->copy, memory_order_acquire);
        if (!c) break;
        s_repoint(m, r->p, c, r->packed);
        s_drop_pages(r->p, r->n); /* what the last passes faulted back in */
        m->n_adopted++;
    }
    if (m->n_adopted == m->n_pf) (void)mprotect(m->copy_base, m->copy_bytes, PROT_READ);
    pthread_mutex_unlock(&m->adopt_mu);
}

g4_weights_mode_t g4_model_warm(g4_model_t *m, g4_weights_mode_t mode)
{
    if (m->pf_running || m->n_pf == 0) return m->mode;
    if (mode == G4_WEIGHTS_COPY) {
        size_t total = 0;
        for (int i = 0; i < m->n_pf; i++) total += (m->pf[i].n + 63) & ~(size_t)63;
        const size_t len = (total + S_HUGE - 1) / S_HUGE * S_HUGE;
        /* leave an eighth of what is available (at least 512 MiB) to the rest */
        const uint64_t avail = g4_mem_available(), keep = avail / 8 > ((uint64_t)512 << 20) ? avail / 8 : (uint64_t)512 << 20;
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
    /* tests and benchmarks: every pass on the final weights */
    if (getenv("G4_WARM_SYNC")) g4_model_warmed(m, 1, NULL);
    return m->mode;
}

int g4_model_warmed(g4_model_t *m, int wait, double *ms)
{
    if (m->pf_running && wait) {
        pthread_join(m->pf_thread, NULL);
        m->pf_running = 0;
        g4_warm_adopt(m);
    }
    const int done = !m->pf_running || atomic_load(&m->pf_done);
    if (ms) *ms = done ? (double)m->warm_ns / 1e6 : 0; /* 0: never started */
    return done;
}

void g4_warm_fini(g4_model_t *m)
{
    if (m->pf_running) {
        atomic_store(&m->pf_stop, 1);
        pthread_join(m->pf_thread, NULL);
    }
    if (m->copy_base) munmap(m->copy_base, m->copy_bytes);
    pthread_mutex_destroy(&m->adopt_mu);
    g4_free(m->pf);
}

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

int g4_model_weights_packed(const g4_model_t *m)
{
    int n = 0;
    for (int i = 0; i < m->n_adopted; i++) n += m->pf[i].packed && m->pf[i].t->packed;
    return n;
}
