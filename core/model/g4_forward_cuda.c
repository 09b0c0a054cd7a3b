/* g4_forward_cuda — the forward pass on a CUDA device (g4_ctx_params.gpu):
 * the same steps as g4_forward.c's, each one a kernel of core/cuda
 * (g4_cuda.h) on device buffers:
 *
 *   g4_fwd_dev_new       uploads the range's matrices and norm vectors once,
 *                        allocates the device scratch for n_ubatch rows
 *   g4_fwd_dev_forward   input rows to the device (embedded on the host, or
 *                        the previous stage's hidden states), every layer of
 *                        the range on the stream, then the hidden states or
 *                        the logits back
 *
 * The caches of the sequences live in device memory (g4_kv_mem_*): g4_kv.c
 * and g4_prefix.c copy rows through these for forks, the K/V rows stages
 * pass on, and the prefix cache, so everything above the context works the
 * same on either. What stays on the host: the row checks and the cache
 * bookkeeping of g4_ctx_forward, the token embedding (and the E models'
 * per-layer inputs: a few rows), the MoE router's top-K (its logits come
 * back, T × 128 floats).
 *
 * Without CUDA in the build only the host half is here: cache memory is
 * host memory and a context asking for a GPU is refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "g4_alloc.h"
#include "g4_cuda.h"
#include "g4_dot.h"
#include "g4_model_internal.h"

int g4_device_from_name(const char *name)
{
    if (!name || !*name) return -1;
    if (!strcasecmp(name, "cpu")) return 0;
    if (!strncasecmp(name, "cuda", 4)) { /* cuda, cuda:N, or llama.cpp's CUDAN */
        const char *p = name + 4;
        if (!*p) return 1;
        if (*p == ':') p++;
        if (*p < '0' || *p > '9') return -1;
        char *end = NULL;
        const long n = strtol(p, &end, 10);
        if (*end || n < 0 || n > 255) return -1;
        return (int)n + 1;
    }
    return -1;
}

const char *g4_device_name(int gpu, char *buf, size_t n)
{
    if (gpu <= 0) snprintf(buf, n, "cpu");
    else snprintf(buf, n, "cuda:%d", gpu - 1);
    return buf;
}

#ifndef G4_HAVE_CUDA

int g4_fwd_dev_new(g4_ctx_t *c, g4_err_t *err)
{
    return g4_err_set(err, G4_ERR_RANGE, "cuda:%d: this build has no CUDA backend (nvcc was not found when it was built)",
                      c->p.gpu - 1);
}
void g4_fwd_dev_free(g4_ctx_t *c) { (void)c; }
int g4_fwd_dev_forward(g4_ctx_t *c, const g4_batch_t *b, int T, const float *hidden_in, float *ple_io,
                       float *hidden_out, float *logits, g4_err_t *err)
{
    return g4_err_set(err, G4_ERR_STATE, "no CUDA backend");
}
void *g4_kv_mem_alloc(const g4_ctx_t *c, size_t n) { return g4_calloc(1, n); }
void g4_kv_mem_free(const g4_ctx_t *c, void *p) { g4_free(p); }
void g4_kv_mem_copy(const g4_ctx_t *c, void *dst, int dst_cache, const void *src, int src_cache, size_t n)
{
    memcpy(dst, src, n);
}

#else

/* a matrix on the device: N rows of K elements, row_bytes apart */
typedef struct {
    g4_dtype_t dt;
    uint8_t *d;
    size_t row_bytes;
    int64_t K, N;
} dmat_t;

typedef struct {
    dmat_t wq, wk, wv, wo, gate, up, down;
    dmat_t gate_inp, gate_up_exps, gate_exps, up_exps, down_exps;
    dmat_t inp_gate, proj;
    float *attn_norm, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffw_norm;
    float *gate_inp_scale, *pre_ffw_norm_2, *post_ffw_norm_1, *post_ffw_norm_2, *down_exps_scale;
    float *post_norm;
} dlayer_t;

#define LOGIT_ROWS 16 /* rows of logits computed at a time (a [16, n_vocab] buffer) */
#define GRAPH_T 8     /* passes of up to this many rows replay a recorded graph */

struct g4_fwd_dev {
    g4_cu_t *cu;
    dlayer_t *L; /* [n_layer], [begin, end) filled */
    dmat_t output;
    float *output_norm, *rope_freqs;
    void **allocs; /* every weight allocation, for free */
    int n_allocs, cap_allocs;
    size_t weight_bytes;
    /* scratch for T <= n_ubatch rows */
    float *x, *a, *q, *k, *v, *o, *t1, *fg, *fu, *ple, *logits;
    float *moe_acc, *moe_in, *moe_x, *moe_g, *moe_u, *moe_d, *moe_dd, *moe_w;
    int32_t *moe_sel, *moe_idx;
    /* the pass's row tables, T (its rows) apart, so a decode step uploads a
     * few hundred bytes, not n_ubatch rows' worth */
    int rs;       /* T of the pass the tables hold                            */
    int attn_fast; /* $G4_CUDA_ATTN=fast: g4_cu_attention (flash-decoding in
                    * position order, f32) instead of the CPU's arithmetic     */
    int32_t *i32; /* [5][T]: pos, lo/hi of full layers, lo/hi of sliding ones */
    void **kvp;   /* [n_layer][2][T]: K, V cache of each row's sequence      */
    g4_cu_attn_row_t *arows; /* [n_layer][T]: each row's attention, as the CPU's */
    int32_t *views;          /* [T][n_lcell]: the sliding view each row visits */
    /* pinned host staging */
    int32_t *h_i32, *h_idx, *h_views;
    void **h_kvp;
    g4_cu_attn_row_t *h_arows;
    float *h_io;
    size_t h_io_floats;
    /* decode steps of T rows (T <= GRAPH_T): the layers' kernels recorded
     * once (the second pass of that size) and replayed; off with
     * $G4_CUDA_GRAPHS=0, on MoE models (the router waits for the host) and
     * after a capture fails */
    int graphs_on;
    g4_cu_graph_t *graph[GRAPH_T];
    uint64_t graph_epoch[GRAPH_T];
    int graph_seen[GRAPH_T];
};

static void s_unpin(void *p) { g4_cu_host_free(p); }

static void *s_dalloc(struct g4_fwd_dev *fd, size_t n, g4_err_t *err, const char *what)
{
    void *d = g4_cu_alloc(fd->cu, n ? n : 1);
    if (!d) {
        size_t fr = 0, tot = 0;
        g4_cu_device_info(g4_cu_device(fd->cu), NULL, 0, &fr, &tot, NULL);
        g4_err_set(err, G4_ERR_NOMEM, "cuda:%d: out of device memory for %s (%.1f MiB; %.1f of %.1f GiB free)",
                   g4_cu_device(fd->cu), what, n / 1048576.0, fr / 1073741824.0, tot / 1073741824.0);
        return NULL;
    }
    if (fd->n_allocs == fd->cap_allocs) {
        const int cap = fd->cap_allocs ? 2 * fd->cap_allocs : 64;
        void **a = g4_realloc(fd->allocs, (size_t)cap * sizeof *a);
        if (!a) {
            g4_cu_free(fd->cu, d);
            g4_err_set(err, G4_ERR_NOMEM, "out of memory");
            return NULL;
        }
        fd->allocs = a, fd->cap_allocs = cap;
    }
    fd->allocs[fd->n_allocs++] = d;
    return d;
}

/* the bytes a matrix holds as the file has them: a packed copy (g4_pack.h)
 * is read from the file's range instead */
static const void *s_plain_bytes(const g4_model_t *m, const g4_tensor_t *t)
{
    if (!t->packed) return t->data;
    for (int i = 0; i < m->n_pf; i++)
        if (m->pf[i].t == t) return m->pf[i].p;
    return NULL;
}

static int s_upmat(g4_ctx_t *c, const g4_tensor_t *t, dmat_t *out, g4_err_t *err)
{
    struct g4_fwd_dev *fd = c->dev;
    memset(out, 0, sizeof *out);
    if (!t->data) return G4_OK;
    if (!g4_cu_type_ok(t->dtype))
        return g4_err_set(err, G4_ERR_RANGE, "cuda: tensor '%s' is %s, a type the GPU kernels do not multiply with",
                          t->name ? t->name : "?", g4_dtype_name(t->dtype));
    const void *src = s_plain_bytes(c->m, t);
    if (!src) return g4_err_set(err, G4_ERR_STATE, "cuda: tensor '%s' has no plain copy", t->name ? t->name : "?");
    out->dt = t->dtype;
    out->K = t->ne[0];
    out->N = g4_tensor_nrows(t);
    out->row_bytes = t->nb[1];
    const size_t n = out->row_bytes * (size_t)out->N;
    /* the same tensor twice (a tied LM head): one copy */
    if (!(out->d = s_dalloc(fd, n, err, t->name ? t->name : "a weight"))) return G4_ERR_NOMEM;
    fd->weight_bytes += n;
    int rc = g4_cu_h2d(fd->cu, out->d, src, n);
    if (!rc) rc = g4_cu_sync(fd->cu, err);
    return rc ? g4_err_set(err, G4_ERR_IO, "cuda: uploading '%s' failed", t->name ? t->name : "?") : G4_OK;
}

static int s_upvec(g4_ctx_t *c, const float *h, size_t n, float **out, g4_err_t *err)
{
    *out = NULL;
    if (!h) return G4_OK;
    if (!(*out = s_dalloc(c->dev, n * 4, err, "a norm vector"))) return G4_ERR_NOMEM;
    return g4_cu_h2d(c->dev->cu, *out, h, n * 4);
}

void g4_fwd_dev_free(g4_ctx_t *c)
{
    struct g4_fwd_dev *fd = c ? c->dev : NULL;
    if (!fd) return;
    for (int i = 0; i < GRAPH_T; i++) g4_cu_graph_free(&fd->graph[i]);
    if (fd->cu) {
        g4_cu_sync(fd->cu, NULL);
        for (int i = 0; i < fd->n_allocs; i++) g4_cu_free(fd->cu, fd->allocs[i]);
        g4_cu_close(&fd->cu);
    }
    s_unpin(fd->h_i32);
    s_unpin(fd->h_idx);
    s_unpin(fd->h_kvp);
    s_unpin(fd->h_arows);
    s_unpin(fd->h_views);
    s_unpin(fd->h_io);
    g4_free(fd->allocs);
    g4_free(fd->L);
    g4_free(fd);
    c->dev = NULL;
}

int g4_fwd_dev_new(g4_ctx_t *c, g4_err_t *err)
{
    const g4_model_t *m = c->m;
    const g4_hparams_t *hp = &m->hp;
    const int dev = c->p.gpu - 1;
    if (c->kv_type == G4_KV_Q8_0)
        return g4_err_set(err, G4_ERR_RANGE, "cuda:%d: the GPU keeps an f16 or f32 KV cache, not q8_0", dev);
    const int ndev = g4_cu_device_count();
    if (dev >= ndev)
        return g4_err_set(err, G4_ERR_UNAVAILABLE, "cuda:%d: no such device (%d CUDA device%s found)", dev, ndev,
                          ndev == 1 ? "" : "s");
    struct g4_fwd_dev *fd = g4_calloc(1, sizeof *fd);
    if (!fd) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    g4_kernels_init(); /* (g4_kernels_isa: the CPU whose attention arithmetic the GPU follows) */
    c->dev = fd;
    if (!(fd->cu = g4_cu_open(dev, err))) goto fail;
    /* the weights: every matrix and norm vector of the range (LM head last) */
    size_t need = 0;
    for (int i = 0; i < m->n_pf; i++) need += m->pf[i].n;
    size_t fr = 0, tot = 0;
    if (!g4_cu_device_info(dev, NULL, 0, &fr, &tot, NULL) && need > fr) {
        g4_err_set(err, G4_ERR_NOMEM, "cuda:%d: the weights of layers %d..%d need %.2f GiB, the device has %.2f GiB free",
                   dev, m->begin, m->end - 1, need / 1073741824.0, fr / 1073741824.0);
        goto fail;
    }
    fd->L = g4_calloc(hp->n_layer, sizeof *fd->L);
    if (!fd->L) goto nomem;
    const int H = (int)hp->n_embd;
    for (int l = m->begin; l < m->end; l++) {
        const g4_layer_t *L = &m->layers[l];
        dlayer_t *D = &fd->L[l];
        const int hd = (int)(hp->is_swa[l] ? hp->hd_swa : hp->hd_full);
        const g4_tensor_t *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down, &L->gate_inp,
                                     &L->gate_up_exps, &L->gate_exps, &L->up_exps, &L->down_exps, &L->inp_gate, &L->proj};
        dmat_t *dm[] = {&D->wq, &D->wk, &D->wv, &D->wo, &D->gate, &D->up, &D->down, &D->gate_inp,
                        &D->gate_up_exps, &D->gate_exps, &D->up_exps, &D->down_exps, &D->inp_gate, &D->proj};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
            if (s_upmat(c, mats[i], dm[i], err)) goto fail;
        struct {
            const float *h;
            size_t n;
            float **d;
        } vecs[] = {{L->attn_norm, H, &D->attn_norm},           {L->q_norm, hd, &D->q_norm},
                    {L->k_norm, hd, &D->k_norm},                 {L->post_attn_norm, H, &D->post_attn_norm},
                    {L->ffn_norm, H, &D->ffn_norm},              {L->post_ffw_norm, H, &D->post_ffw_norm},
                    {L->gate_inp_scale, H, &D->gate_inp_scale},  {L->pre_ffw_norm_2, H, &D->pre_ffw_norm_2},
                    {L->post_ffw_norm_1, H, &D->post_ffw_norm_1}, {L->post_ffw_norm_2, H, &D->post_ffw_norm_2},
                    {L->down_exps_scale, hp->n_expert, &D->down_exps_scale}, {L->post_norm, H, &D->post_norm}};
        for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++)
            if (s_upvec(c, vecs[i].h, vecs[i].n, vecs[i].d, err)) goto fail;
    }
    if (m->end == (int)hp->n_layer) {
        if (s_upmat(c, &m->output, &fd->output, err)) goto fail;
        if (s_upvec(c, m->output_norm, H, &fd->output_norm, err)) goto fail;
    }
    if (s_upvec(c, m->rope_freqs, (size_t)m->n_rope_freqs, &fd->rope_freqs, err)) goto fail;
    /* scratch, as g4_ctx_new sizes the host's */
    const size_t T = (size_t)c->p.n_ubatch;
    size_t hd_max = hp->hd_full > hp->hd_swa ? hp->hd_full : hp->hd_swa, nkv_max = 0, ff_max = 1;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        if (hp->n_head_kv[l] > nkv_max) nkv_max = hp->n_head_kv[l];
        if (hp->n_ff[l] > ff_max) ff_max = hp->n_ff[l];
    }
    const size_t nq = hp->n_head * hd_max, nkv = nkv_max * hd_max, PW = (size_t)hp->n_layer * hp->ple_dim;
    size_t fwide = ff_max > hp->ple_dim ? ff_max : hp->ple_dim;
    struct {
        float **p;
        size_t n;
    } bufs[] = {{&fd->x, T * H}, {&fd->a, T * H}, {&fd->q, T * nq}, {&fd->k, T * nkv}, {&fd->v, T * nkv},
                {&fd->o, T * nq}, {&fd->t1, T * H}, {&fd->fg, T * fwide}, {&fd->fu, T * fwide}, {&fd->ple, T * (PW ? PW : 1)}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!(*bufs[i].p = s_dalloc(fd, bufs[i].n * 4, err, "the activations"))) goto fail;
    if (m->end == (int)hp->n_layer && !(fd->logits = s_dalloc(fd, (size_t)LOGIT_ROWS * hp->n_vocab * 4, err, "the logits")))
        goto fail;
    if (hp->n_expert) {
        const size_t K = hp->n_expert_used, fe = hp->n_ff_exp;
        struct {
            float **p;
            size_t n;
        } mb[] = {{&fd->moe_acc, T * H}, {&fd->moe_in, T * H}, {&fd->moe_x, T * H}, {&fd->moe_g, T * fe},
                  {&fd->moe_u, T * fe},  {&fd->moe_d, T * H},  {&fd->moe_dd, T * K * H}, {&fd->moe_w, T * K}};
        for (size_t i = 0; i < sizeof mb / sizeof mb[0]; i++)
            if (!(*mb[i].p = s_dalloc(fd, mb[i].n * 4, err, "the experts' activations"))) goto fail;
        if (!(fd->moe_sel = s_dalloc(fd, T * K * 4, err, "the experts' choice"))) goto fail;
        if (!(fd->moe_idx = s_dalloc(fd, 2 * T * K * 4, err, "the experts' rows"))) goto fail;
        if (!(fd->h_idx = g4_cu_host_alloc(2 * T * K * 4))) goto nomem;
    }
    if (!(fd->i32 = s_dalloc(fd, 5 * T * 4, err, "the positions"))) goto fail;
    if (!(fd->kvp = s_dalloc(fd, (size_t)hp->n_layer * 2 * T * sizeof(void *), err, "the cache table"))) goto fail;
    if (!(fd->arows = s_dalloc(fd, (size_t)hp->n_layer * T * sizeof *fd->arows, err, "the attention table"))) goto fail;
    const size_t nl = c->n_lcell ? (size_t)c->n_lcell : 1;
    if (!(fd->views = s_dalloc(fd, T * nl * 4, err, "the attention views"))) goto fail;
    if (!(fd->h_arows = g4_cu_host_alloc((size_t)hp->n_layer * T * sizeof *fd->h_arows)) ||
        !(fd->h_views = g4_cu_host_alloc(T * nl * 4)))
        goto nomem;
    fd->h_io_floats = T * (PW > (size_t)H ? PW : (size_t)H);
    if (!(fd->h_i32 = g4_cu_host_alloc(5 * T * 4)) || !(fd->h_kvp = g4_cu_host_alloc((size_t)hp->n_layer * 2 * T * sizeof(void *))) ||
        !(fd->h_io = g4_cu_host_alloc(fd->h_io_floats * 4)))
        goto nomem;
    if (g4_cu_sync(fd->cu, err)) goto fail;
    const char *ae = getenv("G4_CUDA_ATTN");
    fd->attn_fast = ae && !strcmp(ae, "fast");
    const char *ge = getenv("G4_CUDA_GRAPHS");
    fd->graphs_on = !hp->n_expert && !(ge && !strcmp(ge, "0"));
    return G4_OK;
nomem:
    g4_err_set(err, G4_ERR_NOMEM, "out of (pinned) host memory for the GPU context");
fail:
    g4_fwd_dev_free(c);
    return err && err->code ? err->code : G4_ERR_NOMEM;
}

/* ---- cache memory ---------------------------------------------------------- */

void *g4_kv_mem_alloc(const g4_ctx_t *c, size_t n)
{
    if (!c->dev) return g4_calloc(1, n);
    return g4_cu_alloc(c->dev->cu, n ? n : 1); /* zeroed */
}

void g4_kv_mem_free(const g4_ctx_t *c, void *p)
{
    if (!p) return;
    if (!c->dev) g4_free(p);
    else g4_cu_free(c->dev->cu, p);
}

void g4_kv_mem_copy(const g4_ctx_t *c, void *dst, int dst_cache, const void *src, int src_cache, size_t n)
{
    if (!c->dev) {
        memcpy(dst, src, n);
        return;
    }
    g4_cu_t *cu = c->dev->cu;
    if (dst_cache && src_cache) g4_cu_d2d(cu, dst, src, n);
    else if (dst_cache) g4_cu_h2d(cu, dst, src, n);
    else if (src_cache) g4_cu_d2h(cu, dst, src, n);
    else memcpy(dst, src, n);
    g4_cu_sync(cu, NULL);
}

/* ---- the pass -------------------------------------------------------------- */

typedef struct {
    g4_ctx_t *c;
    struct g4_fwd_dev *fd;
    g4_cu_t *cu;
    g4_err_t *err;
    int rc;
} pass_t;

/* Y = X·Wᵀ over W's rows [row0, row0 + nrows) */
static void s_mm(pass_t *P, const dmat_t *W, int64_t row0, int64_t nrows, const float *X, int64_t ldx, int64_t T,
                 float *Y, int64_t ldy)
{
    if (P->rc || T <= 0) return;
    P->rc = g4_cu_matmul(P->cu, W->dt, W->d + (size_t)row0 * W->row_bytes, W->row_bytes, W->K, nrows < 0 ? W->N : nrows,
                         X, ldx, T, Y, ldy, P->err);
}

/* one step, unless an earlier one failed; a failure keeps the first message */
#define OK(call)                                                                       \
    do {                                                                               \
        if (!P->rc) {                                                                  \
            const int rc_ = (call);                                                    \
            if (rc_) {                                                                 \
                P->rc = rc_;                                                           \
                if (P->err && P->err->code == G4_OK)                                   \
                    g4_err_set(P->err, rc_, "cuda: %s failed", #call);                 \
            }                                                                          \
        }                                                                              \
    } while (0)

static void s_attention(pass_t *P, int l, int T)
{
    g4_ctx_t *c = P->c;
    struct g4_fwd_dev *fd = P->fd;
    const g4_hparams_t *hp = &c->m->hp;
    const dlayer_t *D = &fd->L[l];
    const int H = (int)hp->n_embd, swa = hp->is_swa[l];
    const int hd = (int)(swa ? hp->hd_swa : hp->hd_full), nh = (int)hp->n_head, nkv = (int)hp->n_head_kv[l];
    const int n_rot = (int)(swa ? hp->n_rot_swa : hp->n_rot_full);
    const float base = swa ? hp->rope_base_swa : hp->rope_base_full;
    const float *ff = swa ? NULL : fd->rope_freqs;
    const int nq = nh * hd, nkvd = nkv * hd;
    const int32_t *pos = fd->i32;
    const int src = g4_model_kv_source(c->m, l), cells = g4_kv_cells(c, src);
    void *const *kp = fd->kvp + (size_t)src * 2 * fd->rs, *const *vp = kp + fd->rs;
    const int f16 = c->kv_elem == 2;

    OK(g4_cu_rmsnorm(P->cu, fd->x, H, D->attn_norm, fd->a, H, H, T, hp->eps));
    s_mm(P, &D->wq, 0, -1, fd->a, H, T, fd->q, nq);
    OK(g4_cu_rmsnorm(P->cu, fd->q, hd, D->q_norm, fd->q, hd, hd, (int64_t)T * nh, hp->eps));
    OK(g4_cu_rope(P->cu, fd->q, nq, T, nh, hd, n_rot, pos, base, ff));
    if (src == l) {
        s_mm(P, &D->wk, 0, -1, fd->a, H, T, fd->k, nkvd);
        if (D->wv.d) s_mm(P, &D->wv, 0, -1, fd->a, H, T, fd->v, nkvd);
        else OK(g4_cu_d2d(P->cu, fd->v, fd->k, (size_t)T * nkvd * 4)); /* K = V: the raw projection */
        OK(g4_cu_rmsnorm(P->cu, fd->k, hd, D->k_norm, fd->k, hd, hd, (int64_t)T * nkv, hp->eps));
        OK(g4_cu_rmsnorm(P->cu, fd->v, hd, NULL, fd->v, hd, hd, (int64_t)T * nkv, hp->eps));
        OK(g4_cu_rope(P->cu, fd->k, nkvd, T, nkv, hd, n_rot, pos, base, ff));
        OK(g4_cu_kv_store(P->cu, kp, cells, f16, fd->k, nkvd, nkvd, T, pos));
        OK(g4_cu_kv_store(P->cu, vp, cells, f16, fd->v, nkvd, nkvd, T, pos));
    }
    /* the CPU's two kernels, chosen per row as g4_forward.c does (the table: g4_fwd_dev_forward) */
    if (!P->rc && fd->attn_fast) {
        const int32_t *lo = fd->i32 + (size_t)(swa ? 3 : 1) * fd->rs, *hi = lo + fd->rs;
        P->rc = g4_cu_attention(P->cu, fd->q, nq, T, nh, nkv, hd, (const void *const *)kp, (const void *const *)vp, cells, f16,
                                lo, hi, fd->o, nq, P->err);
    } else if (!P->rc) {
        P->rc = g4_cu_attention_rows(P->cu, fd->q, nq, T, nh, nkv, hd, fd->arows + (size_t)src * fd->rs, cells, f16, fd->o,
                                     nq, P->err);
    }
    s_mm(P, &D->wo, 0, -1, fd->o, nq, T, fd->t1, H);
    OK(g4_cu_add_rms(P->cu, fd->x, H, fd->t1, H, D->post_attn_norm, H, T, hp->eps));
}

/* routed experts: the router's logits come back for the top-K (host, the
 * CPU's code), then per expert its rows gathered, multiplied, scattered to
 * their (token, k) slot, and summed per token in k order */
static void s_moe(pass_t *P, int l, int T)
{
    g4_ctx_t *c = P->c;
    struct g4_fwd_dev *fd = P->fd;
    const g4_hparams_t *hp = &c->m->hp;
    const dlayer_t *D = &fd->L[l];
    const int H = (int)hp->n_embd, E = (int)hp->n_expert, K = (int)hp->n_expert_used, fe = (int)hp->n_ff_exp;
    OK(g4_cu_rmsnorm(P->cu, fd->x, H, NULL, fd->a, H, H, T, hp->eps));
    OK(g4_cu_scale(P->cu, fd->a, (int64_t)T * H, 1.0f / sqrtf((float)H)));
    OK(g4_cu_mul(P->cu, fd->a, H, D->gate_inp_scale, 0, fd->a, H, H, T));
    s_mm(P, &D->gate_inp, 0, -1, fd->a, H, T, fd->moe_d, E);
    OK(g4_cu_d2h(P->cu, c->moe_probs, fd->moe_d, (size_t)T * E * 4));
    if (!P->rc) P->rc = g4_cu_sync(P->cu, P->err);
    if (P->rc) return;
    g4_fwd_moe_route(c, T);
    /* rows of each expert: gather index (token) and scatter index (t*K + k) */
    int32_t *gi = fd->h_idx, *si = fd->h_idx + (size_t)T * K;
    int off[257], n_e[256];
    int *cnt = E <= 256 ? n_e : NULL;
    if (!cnt) {
        P->rc = g4_err_set(P->err, G4_ERR_RANGE, "cuda: %d experts (at most 256)", E);
        return;
    }
    memset(n_e, 0, sizeof n_e);
    for (int i = 0; i < T * K; i++) n_e[c->moe_sel[i]]++;
    off[0] = 0;
    for (int e = 0; e < E; e++) off[e + 1] = off[e] + n_e[e];
    int fill[256];
    memcpy(fill, off, sizeof(int) * (size_t)E);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            const int e = c->moe_sel[t * K + k], i = fill[e]++;
            gi[i] = t, si[i] = t * K + k;
        }
    OK(g4_cu_h2d(P->cu, fd->moe_idx, fd->h_idx, (size_t)2 * T * K * 4));
    OK(g4_cu_h2d(P->cu, fd->moe_sel, c->moe_sel, (size_t)T * K * 4));
    OK(g4_cu_h2d(P->cu, fd->moe_w, c->moe_w, (size_t)T * K * 4));
    /* expert input: rms(h1)·pre_ffw_norm_2 */
    OK(g4_cu_rmsnorm(P->cu, fd->x, H, D->pre_ffw_norm_2, fd->moe_in, H, H, T, hp->eps));
    for (int e = 0; e < E && !P->rc; e++) {
        const int n = n_e[e];
        if (!n) continue;
        const int32_t *dgi = fd->moe_idx + off[e], *dsi = fd->moe_idx + (size_t)T * K + off[e];
        OK(g4_cu_gather(P->cu, fd->moe_in, H, dgi, fd->moe_x, H, H, n));
        if (D->gate_up_exps.d) {
            s_mm(P, &D->gate_up_exps, (int64_t)e * 2 * fe, fe, fd->moe_x, H, n, fd->moe_g, fe);
            s_mm(P, &D->gate_up_exps, (int64_t)e * 2 * fe + fe, fe, fd->moe_x, H, n, fd->moe_u, fe);
        } else {
            s_mm(P, &D->gate_exps, (int64_t)e * fe, fe, fd->moe_x, H, n, fd->moe_g, fe);
            s_mm(P, &D->up_exps, (int64_t)e * fe, fe, fd->moe_x, H, n, fd->moe_u, fe);
        }
        OK(g4_cu_geglu(P->cu, fd->moe_g, fd->moe_u, fd->moe_g, (int64_t)n * fe));
        s_mm(P, &D->down_exps, (int64_t)e * H, H, fd->moe_g, fe, n, fd->moe_d, H);
        OK(g4_cu_scatter(P->cu, fd->moe_d, H, dsi, fd->moe_dd, H, H, n));
    }
    OK(g4_cu_moe_combine(P->cu, fd->moe_dd, fd->moe_w, fd->moe_sel, D->down_exps_scale, fd->moe_acc, H, T, K));
    OK(g4_cu_rmsnorm(P->cu, fd->moe_acc, H, D->post_ffw_norm_2, fd->moe_in, H, H, T, hp->eps));
}

static void s_ffn(pass_t *P, int l, int T)
{
    g4_ctx_t *c = P->c;
    struct g4_fwd_dev *fd = P->fd;
    const g4_hparams_t *hp = &c->m->hp;
    const dlayer_t *D = &fd->L[l];
    const int H = (int)hp->n_embd, ff_n = (int)hp->n_ff[l];
    OK(g4_cu_rmsnorm(P->cu, fd->x, H, D->ffn_norm, fd->a, H, H, T, hp->eps));
    s_mm(P, &D->gate, 0, -1, fd->a, H, T, fd->fg, ff_n);
    s_mm(P, &D->up, 0, -1, fd->a, H, T, fd->fu, ff_n);
    OK(g4_cu_geglu(P->cu, fd->fg, fd->fu, fd->fg, (int64_t)T * ff_n));
    s_mm(P, &D->down, 0, -1, fd->fg, ff_n, T, fd->t1, H);
    if (hp->n_expert) {
        OK(g4_cu_rmsnorm(P->cu, fd->t1, H, D->post_ffw_norm_1, fd->t1, H, H, T, hp->eps));
        s_moe(P, l, T); /* f2 = rms(Σ experts)·post_ffw_norm_2 in moe_in */
        OK(g4_cu_add_rms(P->cu, fd->t1, H, fd->moe_in, H, NULL, H, T, hp->eps));
    }
    OK(g4_cu_add_rms(P->cu, fd->x, H, fd->t1, H, D->post_ffw_norm, H, T, hp->eps));
}

static void s_ple(pass_t *P, int l, int T)
{
    g4_ctx_t *c = P->c;
    struct g4_fwd_dev *fd = P->fd;
    const g4_hparams_t *hp = &c->m->hp;
    const dlayer_t *D = &fd->L[l];
    const int H = (int)hp->n_embd, Dm = (int)hp->ple_dim, PW = (int)hp->n_layer * Dm;
    s_mm(P, &D->inp_gate, 0, -1, fd->x, H, T, fd->fg, Dm);
    OK(g4_cu_geglu(P->cu, fd->fg, NULL, fd->fg, (int64_t)T * Dm));
    OK(g4_cu_mul(P->cu, fd->fg, Dm, fd->ple + (size_t)l * Dm, PW, fd->fg, Dm, Dm, T));
    s_mm(P, &D->proj, 0, -1, fd->fg, Dm, T, fd->t1, H);
    OK(g4_cu_add_rms(P->cu, fd->x, H, fd->t1, H, D->post_norm, H, T, hp->eps));
}

static void s_layer(pass_t *P, int l, int T)
{
    const g4_model_t *m = P->c->m;
    s_attention(P, l, T);
    s_ffn(P, l, T);
    if (m->hp.ple_dim) s_ple(P, l, T);
    if (m->layers[l].has_out_scale) OK(g4_cu_scale(P->cu, P->fd->x, (int64_t)T * m->hp.n_embd, m->layers[l].out_scale));
}

/* A pass of T <= GRAPH_T rows as one graph launch: every kernel reads
 * device buffers at fixed addresses that g4_fwd_dev_forward refreshed (the
 * input rows, positions, cache and attention tables), so the recording
 * stays valid while the workspace stays put. 1 when the layers were
 * launched (or failed: P->rc), 0 when the caller enqueues them plainly. */
static int s_graph_pass(pass_t *P, int T)
{
    struct g4_fwd_dev *fd = P->fd;
    g4_ctx_t *c = P->c;
    if (!fd->graphs_on || T > GRAPH_T) return 0;
    const int k = T - 1;
    if (fd->graph[k] && fd->graph_epoch[k] != g4_cu_ws_epoch(fd->cu)) g4_cu_graph_free(&fd->graph[k]);
    if (!fd->graph[k]) {
        if (fd->graph_seen[k]++ < 1) return 0; /* the first pass of a size grows the workspace plainly */
        g4_err_t e2;
        g4_err_clear(&e2);
        if (g4_cu_capture_begin(fd->cu, &e2)) {
            fd->graphs_on = 0;
            return 0;
        }
        pass_t rec = *P;
        rec.err = &e2, rec.rc = G4_OK;
        for (int l = c->m->begin; l < c->m->end && !rec.rc; l++) s_layer(&rec, l, T);
        g4_cu_graph_t *g = NULL;
        const int rc = g4_cu_capture_end(fd->cu, &g, &e2);
        if (rec.rc || rc || !g) { /* nothing ran: plainly, now and from now on if it was an error */
            g4_cu_graph_free(&g);
            if (rec.rc || rc) fd->graphs_on = 0;
            return 0;
        }
        fd->graph[k] = g, fd->graph_epoch[k] = g4_cu_ws_epoch(fd->cu);
    }
    OK(g4_cu_graph_launch(fd->cu, fd->graph[k], P->err));
    for (int l = c->m->begin; l < c->m->end && c->on_layer; l++) c->on_layer(c->on_layer_user);
    return 1;
}

int g4_fwd_dev_forward(g4_ctx_t *c, const g4_batch_t *b, int T, const float *hidden_in, float *ple_io,
                       float *hidden_out, float *logits, g4_err_t *err)
{
    const g4_model_t *m = c->m;
    const g4_hparams_t *hp = &m->hp;
    struct g4_fwd_dev *fd = c->dev;
    const int H = (int)hp->n_embd, PW = (int)(hp->n_layer * hp->ple_dim), U = T;
    pass_t pass = {c, fd, fd->cu, err, G4_OK}, *P = &pass;
    fd->rs = T; /* (the tables below: rows T apart) */
    /* positions, the attention's ranges: full layers [0, pos], sliding ones
     * the window, up to the end of a run of bidirectional rows */
    int32_t *hi32 = fd->h_i32;
    for (int t = 0; t < T; t++) {
        const int p = b->pos[t], w = p - (int)hp->n_swa + 1;
        hi32[t] = p;
        hi32[U + t] = 0, hi32[2 * U + t] = p;
        hi32[3 * U + t] = w > 0 ? w : 0, hi32[4 * U + t] = c->row_hi[t];
    }
    OK(g4_cu_h2d(fd->cu, fd->i32, hi32, (size_t)5 * U * 4));
    /* each row's caches, per layer with one */
    for (int l = 0; l < (int)hp->n_layer; l++)
        for (int t = 0; t < T; t++) {
            const g4_seq_t *s = &c->seqs[b->seq[t]];
            fd->h_kvp[(size_t)l * 2 * U + t] = s->k ? s->k[l] : NULL;
            fd->h_kvp[(size_t)l * 2 * U + U + t] = s->v ? s->v[l] : NULL;
        }
    OK(g4_cu_h2d(fd->cu, fd->kvp, fd->h_kvp, (size_t)hp->n_layer * 2 * U * sizeof(void *)));
    /* each row's attention as the CPU computes it (g4_forward.c s_attention):
     * the single-query F16 kernel for a sequence's rows below 64 (or decode
     * steps fed again), with split-KV chunks for a one-row step; else the
     * tiled kernel; the cells in the order of llama.cpp's layout (the view) */
    for (int t = 0; t < T; t++) c->seq_rows[b->seq[t]] = c->seq_extra[b->seq[t]];
    for (int t = 0; t < T; t++) c->seq_rows[b->seq[t]]++;
    const int f16 = c->kv_elem == 2, nlc = c->n_lcell;
    /* the CPU's dot order for F16 scores, as this machine's kernels would sum them */
    const char *isa = g4_kernels_isa();
    const int dot = !strcmp(isa, "avx512") ? G4_CU_DOT_AVX512 : !strcmp(isa, "avx2") ? G4_CU_DOT_AVX2 : G4_CU_DOT_SCALAR;
    for (int t = 0; t < T; t++) {
        const g4_seq_t *s = &c->seqs[b->seq[t]];
        const int step = c->seq_rows[b->seq[t]] == 1 || (b->flags && (b->flags[t] & G4_ROW_STEP));
        const int fed_again = step && c->seq_rows[b->seq[t]] > 1;
        if (nlc) memcpy(fd->h_views + (size_t)t * nlc, fed_again ? c->row_view + (size_t)t * nlc : s->lcell, (size_t)nlc * 4);
        for (int l = 0; l < (int)hp->n_layer; l++) {
            if (!s->k || !s->k[l]) continue;
            const int swa = hp->is_swa[l];
            g4_cu_attn_row_t *r = &fd->h_arows[(size_t)l * U + t];
            r->K = s->k[l], r->V = s->v[l];
            r->view = swa && nlc ? fd->views + (size_t)t * nlc : NULL;
            r->n_view = fed_again ? c->row_nkv[2 * t + swa] : swa ? s->nkv_swa : s->nkv_full;
            r->lo = swa ? hi32[3 * U + t] : 0, r->hi = swa ? hi32[4 * U + t] : b->pos[t];
            r->single = f16 && (c->seq_rows[b->seq[t]] < 64 || step);
            r->splits = step ? c->attn_splits : 1;
            r->dot = dot;
        }
    }
    if (nlc) OK(g4_cu_h2d(fd->cu, fd->views, fd->h_views, (size_t)T * nlc * 4));
    OK(g4_cu_h2d(fd->cu, fd->arows, fd->h_arows, (size_t)hp->n_layer * T * sizeof *fd->h_arows));
    /* input rows */
    if (m->begin == 0) {
        g4_fwd_embed(c, b, T);
        if (ple_io && PW) memcpy(ple_io, c->ple, (size_t)T * PW * 4);
        memcpy(fd->h_io, c->x, (size_t)T * H * 4);
        OK(g4_cu_h2d(fd->cu, fd->x, fd->h_io, (size_t)T * H * 4));
        if (PW) {
            OK(g4_cu_sync(fd->cu, err)); /* h_io is reused */
            memcpy(fd->h_io, c->ple, (size_t)T * PW * 4);
            OK(g4_cu_h2d(fd->cu, fd->ple, fd->h_io, (size_t)T * PW * 4));
        }
    } else {
        if (!hidden_in) return g4_err_set(err, G4_ERR_RANGE, "layers from %d need hidden states as input", m->begin);
        memcpy(fd->h_io, hidden_in, (size_t)T * H * 4);
        OK(g4_cu_h2d(fd->cu, fd->x, fd->h_io, (size_t)T * H * 4));
        if (PW) {
            if (!ple_io) return g4_err_set(err, G4_ERR_RANGE, "layers from %d need per-layer inputs", m->begin);
            OK(g4_cu_sync(fd->cu, err));
            memcpy(fd->h_io, ple_io, (size_t)T * PW * 4);
            OK(g4_cu_h2d(fd->cu, fd->ple, fd->h_io, (size_t)T * PW * 4));
        }
    }
    if (P->rc) return P->rc;
    if (!s_graph_pass(P, T))
        for (int l = m->begin; l < m->end && !P->rc; l++) {
            s_layer(P, l, T);
            /* a long pass reports each layer as it ends (a daemon's
             * heartbeats); a decode step queues the whole range */
            if (T > 16 && !P->rc) P->rc = g4_cu_sync(fd->cu, err);
            if (c->on_layer) c->on_layer(c->on_layer_user);
        }
    if (P->rc) return P->rc;
    if (m->end < (int)hp->n_layer || hidden_out) {
        if (m->end < (int)hp->n_layer && !hidden_out)
            return g4_err_set(err, G4_ERR_RANGE, "layers up to %d must hand on hidden states", m->end);
        OK(g4_cu_d2h(fd->cu, fd->h_io, fd->x, (size_t)T * H * 4));
        if (!P->rc) P->rc = g4_cu_sync(fd->cu, err);
        if (P->rc) return P->rc;
        memcpy(hidden_out, fd->h_io, (size_t)T * H * 4);
        if (m->end < (int)hp->n_layer) return G4_OK;
    }
    if (!logits) return g4_cu_sync(fd->cu, err);
    /* the rows that want logits, LOGIT_ROWS at a time: gather, norm, head, cap */
    int32_t *rows = fd->h_i32; /* free again: the positions were uploaded */
    OK(g4_cu_sync(fd->cu, err));
    int n_out = 0;
    for (int t = 0; t < T; t++)
        if (!b->want_logits || b->want_logits[t]) rows[n_out++] = t;
    OK(g4_cu_h2d(fd->cu, fd->i32, rows, (size_t)n_out * 4));
    const int64_t V = hp->n_vocab;
    for (int r0 = 0; r0 < n_out && !P->rc; r0 += LOGIT_ROWS) {
        const int n = n_out - r0 < LOGIT_ROWS ? n_out - r0 : LOGIT_ROWS;
        OK(g4_cu_gather(fd->cu, fd->x, H, fd->i32 + r0, fd->a, H, H, n));
        OK(g4_cu_rmsnorm(fd->cu, fd->a, H, fd->output_norm, fd->a, H, H, n, hp->eps));
        s_mm(P, &fd->output, 0, -1, fd->a, H, n, fd->logits, V);
        if (hp->softcap > 0) OK(g4_cu_softcap(fd->cu, fd->logits, (int64_t)n * V, hp->softcap));
        OK(g4_cu_d2h(fd->cu, logits + (size_t)r0 * V, fd->logits, (size_t)n * V * 4));
        if (!P->rc) P->rc = g4_cu_sync(fd->cu, err);
    }
    return P->rc;
}

#endif
